"""The neurons package's modules import one way: config <- lif -> lif_op -> triton_lif.

The custom op (`lif_op`) takes scalars and must not reach back for `LIFConfig` or surrogate
objects (that was a cycle lif -> lif_op -> lif); the kernels (`triton_lif`) import nothing of
the package. Read from the source (every import, module level or inside a function), so a new
back edge fails here whatever the import order at run time.
"""

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import spikeattn.neurons
from spikeattn.neurons import KERNEL_SURROGATES, SURROGATES

PACKAGE = Path(spikeattn.neurons.__file__).parent

# Each module's imports from inside the package (the package's __init__ aside).
EXPECTED = {
    "surrogate": set(),
    "config": {"surrogate"},
    "lif": {"config", "lif_op", "surrogate"},
    "lif_op": {"triton_lif"},
    "triton_lif": set(),
}


def package_imports(module: str) -> set[str]:
    """Sibling modules `module` imports (`from . import x`, `from .x import y`), at any depth."""
    found = set()
    for node in ast.walk(ast.parse((PACKAGE / f"{module}.py").read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found |= {node.module} if node.module else {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom | ast.Import):
            names = (
                [node.module] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            )
            found |= {
                n.rsplit(".", 1)[-1] for n in names if n and n.startswith("spikeattn.neurons.")
            }
    return found


def test_every_module_is_listed():
    assert {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"} == set(EXPECTED)


def test_imports_point_one_way():
    assert {module: package_imports(module) for module in EXPECTED} == EXPECTED


def test_the_kernels_number_every_surrogate():
    from spikeattn.neurons.triton_lif import SURROGATE_IDS

    assert set(SURROGATE_IDS) == set(SURROGATES) == KERNEL_SURROGATES  # the built-ins
    assert sorted(SURROGATE_IDS.values()) == list(range(len(SURROGATES)))


def test_configs_and_presets_load_without_torch():
    """config.py and surrogate.py import no torch: checking a preset (params.yaml validation)
    needs none. The package's __init__ (which imports the torch modules) is bypassed."""
    code = textwrap.dedent(f"""
        import sys, types
        package = types.ModuleType("spikeattn.neurons")
        package.__path__ = [{str(PACKAGE)!r}]
        sys.modules["spikeattn.neurons"] = package
        from spikeattn.neurons.config import lif_config
        lif_config("msresnet", v_threshold=0.4).kernel_arguments()
        try:
            lif_config(None, surrogate_kwargs={{"width": 1.0}})  # atan takes alpha
        except ValueError:
            pass
        print(sorted(m for m in ("torch", "triton") if m in sys.modules))
        """)
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=PACKAGE.parents[1],
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[]"]
