"""build_tables: statistics, formats and failure modes, on small hand-written result files."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest
from result_files import write_run

from spikeattn.records import ResultError
from spikeattn.report import build_tables
from spikeattn.report.formatting import fmt_count, fmt_pm, latex_escape

STUDY = "demo-dvs"
SEEDS = [0, 1, 2]
CONVENTIONS = "E_MAC = 4.6 pJ, E_AC = 0.9 pJ (45 nm); first layer counted as MACs & 100% dense"


def _cell(attention: str, backbone: str = "demo_cnn") -> dict:
    cell = {
        "dataset": "digits-dvs",
        "backbone": backbone,
        "attention": attention,
        "coding": "direct",
        "T": 8,
    }
    cell["id"] = f"{cell['dataset']}__{backbone}__{attention}__direct__T8"
    return cell


CELLS = [_cell("none"), _cell("TCSA")]
# Known per-seed values, by cell id.
ACC = {CELLS[0]["id"]: [0.9612, 0.9655, 0.9589], CELLS[1]["id"]: [0.9701, 0.9688, 0.9730]}
BEST = {CELLS[0]["id"]: [0.9650, 0.9670, 0.9610], CELLS[1]["id"]: [0.9720, 0.9700, 0.9750]}
RATE = {CELLS[0]["id"]: [0.121, 0.118, 0.125], CELLS[1]["id"]: [0.081, 0.079, 0.084]}
ENERGY = {CELLS[0]["id"]: [0.0412, 0.0405, 0.0420], CELLS[1]["id"]: [0.0301, 0.0297, 0.0310]}
PARAMS = {CELLS[0]["id"]: 10412, CELLS[1]["id"]: 12_630_000}


def _write_seed(
    root,
    cell: dict,
    seed: int,
    i: int,
    study: str = STUDY,
    conventions: str = CONVENTIONS,
    like: dict | None = None,
    **status,
):
    """Write one seed's metrics.json and energy.json; `like` borrows another cell's values,
    `status` passes status / diverged_epoch / loss on to write_run."""
    key = (like or cell)["id"]
    return write_run(
        root,
        study,
        cell,
        seed,
        acc=ACC[key][i],
        best=BEST[key][i],
        rate=RATE[key][i],
        energy_uj=ENERGY[key][i],
        params=PARAMS[key],
        sops=1_500_000.0 + 1000 * i,
        conventions=conventions,
        epochs=6,
        **status,
    )


@pytest.fixture
def results(tmp_path):
    root = tmp_path / "results"
    for cell in CELLS:
        for i, seed in enumerate(SEEDS):
            _write_seed(root, cell, seed, i)
    return root


@pytest.fixture
def built(results, tmp_path):
    out = tmp_path / "reports" / STUDY
    df = build_tables(STUDY, CELLS, SEEDS, results, out, caption_extra="Demo run, 6 epochs.")
    return df, out


def test_means_and_stds_match_numpy(built):
    df, _ = built
    for cell in CELLS:
        row = df.set_index("cell").loc[cell["id"]]
        acc = 100 * np.array(ACC[cell["id"]])
        assert row["acc_mean"] == pytest.approx(acc.mean())
        assert row["acc_std"] == pytest.approx(acc.std(ddof=1))
        assert row["best_acc_mean"] == pytest.approx(100 * np.mean(BEST[cell["id"]]))
        assert row["firing_rate_std"] == pytest.approx(np.std(RATE[cell["id"]], ddof=1))
        assert row["energy_uj_mean"] == pytest.approx(np.mean(ENERGY[cell["id"]]))
        assert row["seeds"] == 3 and row["params"] == PARAMS[cell["id"]]


def test_all_outputs_present_and_consistent(built):
    df, out = built
    assert sorted(p.name for p in out.iterdir()) == [
        "metrics.json",
        "summary.csv",
        "summary.md",
        "summary.tex",
    ]
    csv = pd.read_csv(out / "summary.csv")
    assert list(csv["cell"]) == [c["id"] for c in CELLS]  # grid order kept
    pd.testing.assert_frame_equal(csv, df, check_dtype=False)
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {c["id"] for c in CELLS}
    for cell in CELLS:
        assert metrics[cell["id"]]["acc_mean"] == pytest.approx(
            df.set_index("cell").loc[cell["id"], "acc_mean"]
        )
    md = (out / "summary.md").read_text()
    tex = (out / "summary.tex").read_text()
    first = df.iloc[0]
    shown = f"{first['acc_mean']:.2f} ± {first['acc_std']:.2f}"
    assert shown in md and shown.replace("±", r"$\pm$") in tex
    assert md.startswith(f"# {STUDY}\n")
    assert "mean ± sample std over 3 seeds" in md and "Demo run, 6 epochs." in md
    assert "E_MAC = 4.6 pJ" in md  # conventions from energy.json, verbatim
    assert "10.4k" in md and "12.63M" in md


def test_pm_formatting():
    assert fmt_pm(96.5333, 0.1234, 2) == "96.53 ± 0.12"
    assert fmt_pm(96.5333, math.nan, 2) == "96.53 ± –"
    assert fmt_count(10412) == "10.4k" and fmt_count(12_630_000) == "12.63M"
    assert fmt_count(812) == "812"


def test_single_seed_shows_dash_and_nan(results, tmp_path):
    out = tmp_path / "one"
    df = build_tables(STUDY, CELLS, [0], results, out)
    assert df["acc_std"].isna().all()
    assert pd.read_csv(out / "summary.csv")["acc_std"].isna().all()
    md = (out / "summary.md").read_text()
    assert "± –" in md and "± 0.00" not in md
    assert "--" in (out / "summary.tex").read_text()
    text = (out / "metrics.json").read_text()
    assert "NaN" not in text
    assert json.loads(text)[CELLS[0]["id"]]["acc_std"] is None


def test_stale_cell_directories_are_ignored(results, tmp_path):
    _write_seed(results, _cell("old_attention"), 0, 0, like=CELLS[0])
    df = build_tables(STUDY, CELLS, SEEDS, results, tmp_path / "out")
    assert list(df["cell"]) == [c["id"] for c in CELLS]
    assert "old_attention" not in (tmp_path / "out" / "summary.md").read_text()


def test_missing_seed_file_names_path_and_writes_nothing(results, tmp_path):
    missing = results / STUDY / CELLS[1]["id"] / "seed2" / "energy.json"
    missing.unlink()
    out = tmp_path / "out"
    with pytest.raises(FileNotFoundError) as err:
        build_tables(STUDY, CELLS, SEEDS, results, out)
    message = str(err.value)
    assert str(missing) in message
    assert f"spikeattn energy --study {STUDY} --cell {CELLS[1]['id']} --seed 2" in message
    assert "snakemake" in message
    assert not out.exists() or not any(out.iterdir())


def test_differing_conventions_name_both_files(results, tmp_path):
    _write_seed(results, CELLS[1], 1, 1, conventions="something else")
    with pytest.raises(ValueError, match="conventions differ") as err:
        build_tables(STUDY, CELLS, SEEDS, results, tmp_path / "out")
    assert "seed0" in str(err.value) and f"{CELLS[1]['id']}/seed1" in str(err.value)
    assert not (tmp_path / "out").exists()


def test_metrics_json_is_strict_json(built):
    _, out = built
    data = json.loads(
        (out / "metrics.json").read_text(),
        parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"),
    )
    entry = data[CELLS[0]["id"]]
    assert set(entry) == {
        "acc_mean",
        "acc_std",
        "best_acc_mean",
        "firing_rate_mean",
        "energy_uj_mean",
        "params",
        "target_acc",
        "seeds",
        "n_diverged",
    }
    assert entry["target_acc"] is None
    assert isinstance(entry["params"], int)
    assert (entry["seeds"], entry["n_diverged"]) == (3, 0)


def test_latex_escapes_underscores(results, tmp_path):
    cells = [_cell("none"), _cell("none", backbone="other_net")]
    for i, seed in enumerate(SEEDS):
        _write_seed(results, cells[1], seed, i, like=CELLS[1])
    out = tmp_path / "tex"
    build_tables(STUDY, cells, SEEDS, results, out)
    tex = (out / "summary.tex").read_text()
    assert r"other\_net / none / direct / T=8" in tex  # backbone varies, so it names the row
    assert r"demo\_cnn" in tex and "demo_cnn" not in tex
    assert r"E\_MAC" in tex and r"100\% dense" in tex and r"MACs \& 100" in tex
    assert r"\toprule" in tex and r"\bottomrule" in tex and r"\label{tab:demo-dvs}" in tex
    assert r"Acc. (\%)" in tex and r"Energy ($\mu$J)" in tex


def test_latex_escape_does_not_double_escape():
    assert latex_escape(r"a_b\c%") == r"a\_b\textbackslash{}c\%"


def test_paper_targets_sit_beside_matching_cells(results, tmp_path):
    out = tmp_path / "reports" / STUDY
    targets = [{"cell": {"attention": "TCSA"}, "acc": 96.53, "source": "MA-SNN (TPAMI 2023)"}]
    df = build_tables(STUDY, CELLS, SEEDS, results, out, targets=targets)
    assert math.isnan(df.loc[0, "target_acc"]) and df.loc[1, "target_acc"] == 96.53
    md = (out / "summary.md").read_text()
    assert "Paper (%)" in md and "96.53 |" in md and "MA-SNN (TPAMI 2023)" in md
    assert json.loads((out / "metrics.json").read_text())[CELLS[1]["id"]]["target_acc"] == 96.53
    plain = build_tables(STUDY, CELLS, SEEDS, results, tmp_path / "plain")
    assert plain["target_acc"].isna().all()
    assert "Paper" not in (tmp_path / "plain" / "summary.md").read_text()


# -- diverged runs -----------------------------------------------------------------------------
NAN_WORD = re.compile(r"\bnan\b", re.IGNORECASE)


def _table_lines(md: str) -> list[str]:
    return [line for line in md.splitlines() if line.startswith("|")]


def _tex_body(tex: str) -> str:
    """The tabular only: the caption may say 'NaN loss' on purpose."""
    return tex[tex.index(r"\begin{tabular}") : tex.index(r"\end{tabular}")]


def test_one_diverged_seed_among_three_is_left_out_and_counted(results, tmp_path):
    bad = CELLS[1]
    _write_seed(results, bad, 1, 1, status="diverged", diverged_epoch=4, loss="nan")
    out = tmp_path / "out"
    df = build_tables(STUDY, CELLS, SEEDS, results, out)
    row = df.set_index("cell").loc[bad["id"]]
    kept = [0, 2]  # seed 1's last-epoch values (still in its metrics.json) must not count
    acc = 100 * np.array(ACC[bad["id"]])[kept]
    assert row["acc_mean"] == pytest.approx(acc.mean())
    assert row["acc_std"] == pytest.approx(acc.std(ddof=1))
    assert row["best_acc_mean"] == pytest.approx(100 * np.mean(np.array(BEST[bad["id"]])[kept]))
    assert row["energy_uj_mean"] == pytest.approx(np.mean(np.array(ENERGY[bad["id"]])[kept]))
    assert row["sops_mean"] == pytest.approx(1_501_000.0)
    assert (row["status"], row["seeds"], row["n_diverged"]) == ("some_diverged", 2, 1)
    assert row["params"] == PARAMS[bad["id"]]
    good = df.set_index("cell").loc[CELLS[0]["id"]]
    assert (good["status"], good["seeds"], good["n_diverged"]) == ("completed", 3, 0)

    csv = pd.read_csv(out / "summary.csv")
    pd.testing.assert_frame_equal(csv, df, check_dtype=False)
    md = (out / "summary.md").read_text()
    line = next(line for line in _table_lines(md) if line.startswith("| TCSA"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[1] == f"{acc.mean():.2f} ± {acc.std(ddof=1):.2f}"
    assert cells[-1] == "2, 1 diverged"
    assert "1 run diverged (training loss NaN or infinite) and is left out" in md
    assert "TCSA / direct / T=8 seed 1 (epoch 4, NaN loss)" in md
    assert not any(NAN_WORD.search(line) for line in _table_lines(md))
    tex = (out / "summary.tex").read_text()
    assert "2, 1 diverged" in tex and not NAN_WORD.search(_tex_body(tex))
    metrics = json.loads(
        (out / "metrics.json").read_text(),
        parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"),
    )
    assert (metrics[bad["id"]]["seeds"], metrics[bad["id"]]["n_diverged"]) == (2, 1)
    assert metrics[bad["id"]]["acc_mean"] == pytest.approx(acc.mean())


@pytest.mark.parametrize("epoch", [1, 3], ids=["epoch1-null-finals", "epoch3"])
def test_fully_diverged_cell_reads_diverged(results, tmp_path, epoch):
    bad = CELLS[0]
    for i, seed in enumerate(SEEDS):
        _write_seed(results, bad, seed, i, status="diverged", diverged_epoch=epoch, loss="-inf")
    out = tmp_path / "out"
    df = build_tables(STUDY, CELLS, SEEDS, results, out)
    row = df.set_index("cell").loc[bad["id"]]
    assert (row["status"], row["seeds"], row["n_diverged"]) == ("diverged", 0, 3)
    for column in (
        "acc_mean",
        "acc_std",
        "best_acc_mean",
        "firing_rate_mean",
        "energy_uj_mean",
        "sops_mean",
        "macs_mean",
    ):
        assert math.isnan(row[column]), column
    assert row["params"] == PARAMS[bad["id"]]  # architecture: known even without a result
    assert df.set_index("cell").loc[CELLS[1]["id"], "status"] == "completed"

    md = (out / "summary.md").read_text()
    line = next(line for line in _table_lines(md) if line.startswith("| none"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells == [
        "none / direct / T=8",
        "diverged",
        "diverged",
        "diverged",
        "diverged",
        "10.4k",
        "all 3 diverged",
    ]
    assert not any(NAN_WORD.search(line) for line in _table_lines(md))
    assert "3 runs diverged" in md and "seed 2 (epoch " in md and "-inf loss" in md
    assert "a cell whose seeds all diverged reads diverged" in md
    tex = (out / "summary.tex").read_text()
    assert "diverged & diverged" in tex and not NAN_WORD.search(_tex_body(tex))
    text = (out / "metrics.json").read_text()
    metrics = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    entry = metrics[bad["id"]]
    assert entry["acc_mean"] is None and entry["energy_uj_mean"] is None
    assert (entry["seeds"], entry["n_diverged"], entry["params"]) == (0, 3, PARAMS[bad["id"]])
    csv = pd.read_csv(out / "summary.csv")
    assert csv.loc[0, "status"] == "diverged" and csv.loc[0, "n_diverged"] == 3
    assert math.isnan(csv.loc[0, "acc_mean"])


def test_every_cell_diverged_still_writes_the_tables(results, tmp_path):
    for cell in CELLS:
        for i, seed in enumerate(SEEDS):
            _write_seed(results, cell, seed, i, status="diverged", diverged_epoch=1)
    out = tmp_path / "out"
    df = build_tables(STUDY, CELLS, SEEDS, results, out)
    assert set(df["status"]) == {"diverged"} and df["n_diverged"].tolist() == [3, 3]
    md = (out / "summary.md").read_text()
    assert md.count("all 3 diverged") == 2 and "6 runs diverged" in md
    assert not any(NAN_WORD.search(line) for line in _table_lines(md))


def test_old_files_without_status_read_as_completed(results, tmp_path):
    old = tmp_path / "old"
    for cell in CELLS:
        for i, seed in enumerate(SEEDS):
            folder = _write_seed(old, cell, seed, i, status=None)
            assert "status" not in json.loads((folder / "metrics.json").read_text())
    df = build_tables(STUDY, CELLS, SEEDS, old, tmp_path / "a")
    assert set(df["status"]) == {"completed"} and set(df["n_diverged"]) == {0}
    pd.testing.assert_frame_equal(df, build_tables(STUDY, CELLS, SEEDS, results, tmp_path / "b"))
    for name in ("summary.md", "summary.tex", "summary.csv", "metrics.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert "diverged" not in (tmp_path / "a" / "summary.md").read_text()


def test_stale_energy_of_a_diverged_run_writes_nothing(results, tmp_path):
    folder = _write_seed(results, CELLS[0], 2, 2, status="diverged")
    energy = json.loads((folder / "energy.json").read_text())
    del energy["status"]  # an energy.json from before the run was retrained
    (folder / "energy.json").write_text(json.dumps(energy))
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="energy.json is stale"):
        build_tables(STUDY, CELLS, SEEDS, results, out)
    assert not out.exists()


def _edit(path, **changes):
    """Rewrite a result file with `changes` (None deletes the key)."""
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps({k: v for k, v in data.items() if v is not None}))


def test_energy_of_an_earlier_checkpoint_is_refused_naming_both_files(results, tmp_path):
    folder = results / STUDY / CELLS[1]["id"] / "seed1"
    _edit(
        folder / "metrics.json", checkpoint_sha256="9e" * 32, final={"test_acc": 0.5}
    )  # retrained
    out = tmp_path / "out"
    with pytest.raises(ResultError) as err:
        build_tables(STUDY, CELLS, SEEDS, results, out)
    message = str(err.value)
    assert str(folder / "energy.json") in message and str(folder / "metrics.json") in message
    assert f"spikeattn energy --study {STUDY} --cell {CELLS[1]['id']} --seed 1" in message
    assert not out.exists()
    _edit(folder / "energy.json", checkpoint_sha256=None)  # an energy.json naming no checkpoint
    with pytest.raises(ResultError, match="an unnamed checkpoint"):
        build_tables(STUDY, CELLS, SEEDS, results, out)
    _edit(folder / "energy.json", checkpoint_sha256="9e" * 32)  # measured again: agrees
    assert build_tables(STUDY, CELLS, SEEDS, results, out)["acc_mean"].notna().all()


def test_files_from_before_checkpoints_were_named_still_build(results, tmp_path):
    _write_seed(results, CELLS[0], 0, 0, checkpoint=None)
    assert len(build_tables(STUDY, CELLS, SEEDS, results, tmp_path / "out")) == 2


@pytest.mark.parametrize(
    "drop, key",
    [
        ("final", "'final'"),
        ("best", "'best'"),
        ("seed", "'seed'"),
        ("final.test_acc", "'final.test_acc'"),
    ],
)
def test_metrics_json_missing_a_key_names_file_key_and_fix(results, tmp_path, drop, key):
    path = results / STUDY / CELLS[0]["id"] / "seed2" / "metrics.json"
    outer, _, inner = drop.partition(".")
    _edit(path, **{outer: {"test_loss": 0.1} if inner else None})
    with pytest.raises(ResultError) as err:
        build_tables(STUDY, CELLS, SEEDS, results, tmp_path / "out")
    assert f"{path}: no {key}" in str(err.value)
    assert f"spikeattn train --study {STUDY} --cell {CELLS[0]['id']} --seed 2" in str(err.value)
    assert not (tmp_path / "out").exists()


def test_caption_lists_at_most_ten_diverged_runs():
    from spikeattn.report.tables import diverged_caption

    runs = [{"cell": "c", "seed": s, "epoch": None, "loss": None} for s in range(12)]
    text = diverged_caption(runs, lambda run: "X")
    assert "12 runs diverged" in text and "X seed 9;" in text and "seed 10" not in text
    assert "and 2 more" in text
    assert diverged_caption([], lambda run: "X") == ""
