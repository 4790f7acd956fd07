"""benchmarks/data.py keeps running: its smoke mode on tiny sizes prints both tables."""

from pathlib import Path

from benchmark_scripts import load_script

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "data.py"


def test_smoke_run_prints_both_tables(capsys, tmp_path):
    bench = load_script("data")
    out = tmp_path / "results.md"
    assert bench.main(["--smoke", "--append", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "### Preprocessing:" in printed and "### Loading during training:" in printed
    rows = [
        line
        for line in printed.splitlines()
        if line.startswith("| ") and not line.startswith("| case")
    ]
    prep = [
        r for r in rows if "`preprocess`" in r or "DiskCachedDataset" in r or "load_frames" in r
    ]
    loading = [r for r in rows if "`TensorBatches`" in r or "`DataLoader(TensorDataset)`" in r]
    # 3 cases: our build (1 and all cores, or 1 alone), load_frames, tonic first passes and hits
    assert len(prep) >= 3 * 4 and len(loading) >= 3 * 2
    assert not any("frames differ" in r for r in rows), "our frames and tonic's disagree"
    for row in (
        prep + loading
    ):  # events/s (preprocessing) and samples/s (loading): third from the end
        assert float(row.split("|")[-3].strip().replace(",", "")) > 0
    assert out.read_text().strip() == printed.strip()
