"""benchmarks/lif.py keeps running: its smoke mode on tiny sizes (interpreter or GPU)."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "lif.py"


def test_smoke_run_prints_a_row_per_case(capsys):
    spec = importlib.util.spec_from_file_location("lif_benchmark", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--smoke", "--dtypes", "fp32", "bf16"]) == 0
    table = capsys.readouterr().out
    rows = [
        line
        for line in table.splitlines()
        if line.startswith("| fp32") or line.startswith("| bf16")
    ]
    assert len(rows) == 2
    # saved for backward: m only, T * N elements in the input's dtype (T=2, N=1000)
    assert rows[0].endswith("| 8,000 / – |") and rows[1].endswith("| 4,000 / – |")
