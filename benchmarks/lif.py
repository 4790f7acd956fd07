"""Benchmark the fused Triton LIF against the torch reference and SpikingJelly.

For each (dtype, T, N): ms forward, ms forward+backward, bytes moved by our count, achieved
GB/s, % of the device's copy bandwidth (measured here), speedup over the torch reference and
over SpikingJelly's multi-step LIF (its fastest installed backend, when installed), the same
times and bytes for our recompute variant (backend "triton_recompute") with its
forward+backward speedup over the saved-membrane kernel ("auto" takes it only if that is > 1),
and the bytes each saves for backward. The neuron is SpikingJelly's default LIF (tau 2, decay_input,
V_th 1, hard reset to 0, detached; preset `sj_tau2`), so every column compares like with like.

    python benchmarks/lif.py                          # on a CUDA GPU: the full table
    python benchmarks/lif.py --append benchmarks/RESULTS.md
    TRITON_INTERPRET=1 python benchmarks/lif.py --smoke   # tiny sizes on the CPU (a test runs it)

Bytes moved, per element and time step with b bytes per element: the forward reads x and
writes the spikes and the saved m = u - V_th (3b); the backward reads dL/ds and m and writes
dL/dx (3b). The membrane itself stays in registers. The recompute variant saves no m: autograd
keeps x (already in memory) and the forward writes only the spikes plus the fp32 membrane
entering every chunk of CHUNK steps after the first (2b + 4/CHUNK at most, 2b for T <= CHUNK);
the backward reads dL/ds, x and those boundaries and writes dL/dx (3b + 4/CHUNK): 5b + 8/CHUNK
at most instead of 6b.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import inspect
import sys
import time
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from spikeattn.neurons import MultiStepLIF  # noqa: E402
from spikeattn.neurons.triton_lif import CHUNK  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
PRESET = "sj_tau2"


def timer(device: str) -> Callable[[Callable[[], object]], float]:
    """Median milliseconds of a callable: triton's do_bench on a GPU, wall clock otherwise."""
    if device == "cuda":
        from triton.testing import do_bench

        return lambda fn: do_bench(fn, warmup=25, rep=100)

    def wall(fn, reps: int = 3) -> float:
        fn()
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return 1e3 * sorted(times)[len(times) // 2]

    return wall


def copy_bandwidth(bench, device: str, nbytes: int) -> float:
    """GB/s of a plain device-to-device copy (read + write), the roofline for this kernel."""
    src = torch.empty(nbytes, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    return 2 * nbytes / bench(lambda: dst.copy_(src)) / 1e6


def saved_bytes(make_out: Callable[[], torch.Tensor]) -> int:
    """Bytes of the tensors autograd saves while `make_out` runs its forward."""
    total = 0

    def pack(t: torch.Tensor):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        make_out()
    return total


def spikingjelly_neurons(device: str) -> dict[str, torch.nn.Module]:
    """SpikingJelly's multi-step LIF, keyed by implementation (empty when not installed).

    SpikingJelly 0.0.0.0.x takes `backend=` (torch/cupy); 2.x picks its implementation itself
    (cuda, triton or torch; force one with SJ_LIF_CUDA_IMPLEMENTATION) and reports which."""
    try:
        from spikingjelly.activation_based import neuron, surrogate
    except ImportError:
        return {}
    version = importlib.metadata.version("spikingjelly")
    like_ours = dict(
        tau=2.0,
        decay_input=True,
        v_threshold=1.0,
        v_reset=0.0,
        detach_reset=True,
        surrogate_function=surrogate.ATan(alpha=2.0),
        step_mode="m",
    )
    found = {}
    if "backend" not in inspect.signature(neuron.LIFNode.__init__).parameters:
        from spikingjelly.activation_based.functional import neuron_implementation

        node = neuron.LIFNode(**like_ours).to(device)
        node(torch.zeros(2, 8, device=device))
        node.reset()
        impl = (
            neuron_implementation("lif", torch.device(device))["implementation"]
            if device == "cuda"
            else "torch"
        )
        return {f"{impl}, SJ {version}": node}
    for backend in ("cupy", "torch"):
        try:
            node = neuron.LIFNode(backend=backend, **like_ours).to(device)
            node(torch.zeros(2, 8, device=device))
            node.reset()
            found[f"{backend}, SJ {version}"] = node
        except Exception:  # a backend whose package is missing
            continue
    return found


def measure(module: torch.nn.Module, x: torch.Tensor, bench) -> tuple[float, float, int]:
    """(ms forward, ms forward+backward, bytes saved for backward)."""
    reset = getattr(module, "reset", lambda: None)
    grad = torch.ones_like(x)
    xg = x.detach().requires_grad_()

    def forward():
        reset()
        with torch.no_grad():
            return module(x)

    def forward_backward():
        reset()
        module(xg).backward(grad)
        xg.grad = None

    def forward_for_saving():
        reset()
        return module(xg)

    return bench(forward), bench(forward_backward), saved_bytes(forward_for_saving)


def run(dtypes: list[str], Ts: list[int], Ns: list[int], device: str) -> str:
    bench = timer(device)
    ours = MultiStepLIF(PRESET, backend="triton")
    recompute = MultiStepLIF(PRESET, backend="triton_recompute")
    reference = MultiStepLIF(PRESET, backend="torch")
    jelly = spikingjelly_neurons(device)
    largest = max(T * N for T in Ts for N in Ns) * 4
    copy = copy_bandwidth(bench, device, largest)
    rows = [
        "| dtype | T | N | fwd ms | fwd+bwd ms | bytes moved | GB/s | % copy bw | "
        "× torch | × SpikingJelly | recompute fwd ms | recompute fwd+bwd ms | "
        "recompute bytes moved | recompute × saved-m | saved bytes (ours / SJ) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in dtypes:
        dtype = DTYPES[name]
        for T in Ts:
            for N in Ns:
                x = (torch.randn(T, N, device=device) + 0.8).to(dtype)
                fwd, both, saved = measure(ours, x, bench)
                _, ref_both, _ = measure(reference, x, bench)
                moved = 6 * T * N * x.element_size()
                rc_fwd, rc_both, _ = measure(recompute, x, bench)
                rc_moved = 5 * T * N * x.element_size() + 2 * 4 * N * (-(-T // CHUNK) - 1)
                gbs = moved / both / 1e6
                sj = {b: measure(node, x, bench) for b, node in jelly.items()}
                if sj:
                    best = min(sj, key=lambda b: sj[b][1])
                    vs_sj = f"{sj[best][1] / both:.2f} ({best})"
                    sj_saved = f"{sj[best][2]:,}"
                else:
                    vs_sj, sj_saved = "not installed", "–"
                rows.append(
                    f"| {name} | {T} | {N:,} | {fwd:.3f} | {both:.3f} | {moved:,} | "
                    f"{gbs:.0f} | {100 * gbs / copy:.0f} | {ref_both / both:.1f} | {vs_sj} | "
                    f"{rc_fwd:.3f} | {rc_both:.3f} | {rc_moved:,} | {both / rc_both:.2f} | "
                    f"{saved:,} / {sj_saved} |"
                )
    device_name = torch.cuda.get_device_name() if device == "cuda" else "CPU (Triton interpreter)"
    head = (
        f"### {device_name}, {datetime.date.today().isoformat()}\n\n"
        f"Copy bandwidth measured here: {copy:.0f} GB/s. Neuron: `{PRESET}` "
        f"(SpikingJelly's LIFNode defaults). torch {torch.__version__}.\n"
    )
    return head + "\n" + "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=sorted(DTYPES))
    p.add_argument("--T", nargs="+", type=int, default=[4, 16])
    p.add_argument("--N", nargs="+", type=int, default=[1 << 20, 1 << 24])
    p.add_argument(
        "--smoke",
        action="store_true",
        help="tiny sizes on the CPU (needs TRITON_INTERPRET=1): checks the script runs",
    )
    p.add_argument("--append", type=Path, help="append the table to this Markdown file")
    args = p.parse_args(argv)
    if args.smoke:
        device, args.T, args.N = "cpu", [2], [1000]
    elif torch.cuda.is_available():
        device = "cuda"
    else:
        print(
            "benchmarks/lif.py needs a CUDA GPU (or --smoke with TRITON_INTERPRET=1)",
            file=sys.stderr,
        )
        return 2
    table = run(args.dtypes, args.T, args.N, device)
    print(table)
    if args.append:
        with args.append.open("a") as f:
            f.write("\n" + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
