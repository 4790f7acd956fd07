"""The Triton LIF kernels compile to GPU machine code, checked on a machine without a GPU.

The interpreter (TRITON_INTERPRET=1, how the other kernel tests run here) accepts code that the
compiler refuses, so each kernel is also compiled ahead of time for NVIDIA targets (Hopper
sm_90, Ampere sm_80) by Triton's own compiler, in a subprocess without the interpreter. This
proves they compile, not that they run correctly: the numerical tests run natively on a GPU.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"

SCRIPT = textwrap.dedent("""
    import itertools, sys
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from spikeattn.neurons import triton_lif as K

    arch = int(sys.argv[1])
    target = GPUTarget("cuda", arch, 32)
    SCALARS = {"N": "i32", "T": "i32", "decay": "fp32", "gain": "fp32", "v_th": "fp32",
               "v_reset": "fp32"}

    def build(fn, pointers, constexprs, warps, param=False):
        sig = {**{p: t for p, t in pointers.items()}, **SCALARS,
               **({"param": "fp32"} if param else {}), **dict.fromkeys(constexprs, "constexpr")}
        compiled = triton.compile(ASTSource(fn, signature=sig, constexprs=constexprs),
                                  target=target, options={"num_warps": warps})
        assert "cubin" in compiled.asm, fn
        return compiled

    count = 0
    for dt, (soft, ge) in itertools.product(("fp32", "bf16"), [(True, False), (False, True)]):
        warps = K.rc_warps(4 if dt == "fp32" else 2)
        build(K._lif_forward_kernel, {"x_ptr": f"*{dt}", "s_ptr": f"*{dt}", "m_ptr": f"*{dt}"},
              {"SOFT": soft, "GE": ge, "BLOCK": K.BLOCK}, 4)
        build(K._lif_forward_boundary_kernel,
              {"x_ptr": f"*{dt}", "s_ptr": f"*{dt}", "b_ptr": "*fp32"},
              {"SOFT": soft, "GE": ge, "CHUNK": K.CHUNK, "BLOCK": K.BLOCK_RC}, warps)
        count += 2
        for kind in K.SURROGATE_IDS.values():
            detach = bool(kind % 2)
            build(K._lif_backward_kernel,
                  {"gs_ptr": f"*{dt}", "m_ptr": f"*{dt}", "gx_ptr": f"*{dt}"},
                  {"SOFT": soft, "DETACH": detach, "KIND": kind, "GE": ge, "BLOCK": K.BLOCK}, 4,
                  param=True)
            build(K._lif_backward_recompute_kernel,
                  {"gs_ptr": f"*{dt}", "x_ptr": f"*{dt}", "b_ptr": "*fp32", "gx_ptr": f"*{dt}"},
                  {"SOFT": soft, "DETACH": detach, "KIND": kind, "GE": ge, "CHUNK": K.CHUNK,
                   "BLOCK": K.BLOCK_RC}, warps, param=True)
            count += 2
    print("compiled", count)
""")


@pytest.mark.parametrize("arch", [90, 80])
def test_kernels_compile_for_nvidia_gpus(arch):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(arch)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["compiled", "40"]
