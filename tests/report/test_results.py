"""runs_frame, layer_rates and histories on small hand-written per-seed result files."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest
from result_files import write_run

from spikeattn.records import ResultError
from spikeattn.report.results import RUN_COLUMNS, histories, layer_rates, runs_frame

STUDY = "demo-dvs"
SEEDS = [0, 1, 2]
CONVENTIONS = "E_MAC = 4.6 pJ, E_AC = 0.9 pJ (45 nm)"


def _cell(attention: str) -> dict:
    cell = {
        "dataset": "digits-dvs",
        "backbone": "demo_cnn",
        "attention": attention,
        "coding": "direct",
        "T": 8,
    }
    cell["id"] = f"digits-dvs__demo_cnn__{attention}__direct__T8"
    return cell


NONE, TCSA = _cell("none"), _cell("TCSA")
CELLS = [NONE, TCSA]
# Per-seed values by attention. LIF layers are named so that sorting would reorder them.
ACC = {"none": [0.9612, 0.9647, 0.9577], "TCSA": [0.9700, 0.9710, 0.9720]}
BEST = {"none": [0.9650, 0.9660, 0.9600], "TCSA": [0.9750, 0.9760, 0.9770]}
SPIKES = {"none": [1200.0, 1300.0, 1100.0], "TCSA": [300.0, 310.0, 320.0]}
ENERGY = {"none": [0.0400, 0.0410, 0.0420], "TCSA": [0.0300, 0.0300, 0.0300]}
LIF = ("stem_lif", "block2_lif", "attn_lif")
RATES = {  # rates[attention][seed] = per-layer firing rates, forward order
    "none": [(0.30, 0.20, 0.10), (0.32, 0.22, 0.12), (0.34, 0.24, 0.14)],
    "TCSA": [(0.10, 0.05, 0.02), (0.10, 0.07, 0.04), (0.10, 0.09, 0.06)],
}


def _layers(rates) -> list[dict]:
    """energy.json's per-layer records: a conv before each LIF, in forward order."""
    rows = []
    for name, rate in zip(LIF, rates):
        rows.append(
            {
                "layer": name.replace("lif", "conv"),
                "kind": "conv",
                "type": "Conv2d",
                "input": "spikes",
                "firing_rate": 1.0,
                "spike_count": 0.0,
                "sops": 1000.0,
                "macs": 0.0,
                "energy_pj": 900.0,
            }
        )
        rows.append(
            {
                "layer": name,
                "kind": "lif",
                "type": "LIF",
                "input": "real",
                "firing_rate": rate,
                "spike_count": 100.0 * rate,
                "sops": 0.0,
                "macs": 0.0,
                "energy_pj": 0.0,
            }
        )
    return rows


def _write_seed(root, cell: dict, seed: int, i: int, study: str = STUDY, **status):
    """metrics.json, energy.json and history.csv of one seed (values from the tables above);
    `status` passes status / diverged_epoch / loss on to write_run."""
    att = cell["attention"]
    rates = RATES[att][i]
    history = [(1.0 / epoch + i, ACC[att][i] - 0.01 * (3 - epoch)) for epoch in (1, 2, 3)]
    return write_run(
        root,
        study,
        cell,
        seed,
        acc=ACC[att][i],
        best=BEST[att][i],
        rate=float(np.mean(rates)),
        energy_uj=ENERGY[att][i],
        spikes=SPIKES[att][i],
        sops=1_500_000.0 + i,
        layers=_layers(rates),
        conventions=CONVENTIONS,
        history=history,
        **status,
    )


@pytest.fixture
def results(tmp_path):
    root = tmp_path / "results"
    for cell in CELLS:
        for i, seed in enumerate(SEEDS):
            _write_seed(root, cell, seed, i)
    return root


# -- runs_frame --------------------------------------------------------------------------------
def test_runs_frame_one_row_per_cell_and_seed(results):
    runs = runs_frame(STUDY, CELLS, SEEDS, results)
    assert tuple(runs.columns) == RUN_COLUMNS
    assert len(runs) == 6
    assert list(runs["cell"]) == [NONE["id"]] * 3 + [TCSA["id"]] * 3  # grid order, then seeds
    assert list(runs["seed"]) == SEEDS * 2
    assert set(runs["study"]) == {STUDY}
    assert list(runs["attention"]) == ["none"] * 3 + ["TCSA"] * 3
    assert set(runs["dataset"]) == {"digits-dvs"} and set(runs["T"]) == {8}
    assert runs["acc"].tolist() == pytest.approx([96.12, 96.47, 95.77, 97.00, 97.10, 97.20])
    assert runs["best_acc"].tolist() == pytest.approx([96.5, 96.6, 96.0, 97.5, 97.6, 97.7])
    assert runs["spikes"].tolist() == SPIKES["none"] + SPIKES["TCSA"]  # from energy.json
    assert runs["energy_uj"].tolist() == ENERGY["none"] + ENERGY["TCSA"]
    assert runs["sops"].tolist() == [1_500_000.0, 1_500_001.0, 1_500_002.0] * 2
    assert set(runs["macs"]) == {2_000_000} and set(runs["epochs"]) == {3}
    # the firing rate is energy.json's (metrics.json has none)
    assert runs["firing_rate"].iloc[0] == pytest.approx(0.2)


def test_runs_frame_accepts_config_cells(results):
    from spikeattn.config import Cell

    cells = [
        Cell(study=STUDY, **{k: c[k] for k in ("dataset", "backbone", "attention", "coding", "T")})
        for c in CELLS
    ]
    pd.testing.assert_frame_equal(
        runs_frame(STUDY, cells, SEEDS, results), runs_frame(STUDY, CELLS, SEEDS, results)
    )


def test_runs_frame_spikes_nan_when_energy_lacks_them(results):
    path = results / STUDY / NONE["id"] / "seed1" / "energy.json"
    energy = json.loads(path.read_text())
    del energy["spikes"]
    path.write_text(json.dumps(energy))
    runs = runs_frame(STUDY, CELLS, SEEDS, results)
    assert math.isnan(runs["spikes"].iloc[1])
    assert runs["spikes"].drop(index=1).notna().all()


@pytest.mark.parametrize("name, stage", [("metrics.json", "train"), ("energy.json", "energy")])
def test_runs_frame_missing_file_names_path_and_command(results, name, stage):
    missing = results / STUDY / TCSA["id"] / "seed2" / name
    missing.unlink()
    with pytest.raises(FileNotFoundError) as err:
        runs_frame(STUDY, CELLS, SEEDS, results)
    message = str(err.value)
    assert str(missing) in message
    assert f"spikeattn {stage} --study {STUDY} --cell {TCSA['id']} --seed 2" in message


# -- layer_rates -------------------------------------------------------------------------------
def test_layer_rates_mean_and_std_over_seeds_in_forward_order(results):
    rates = layer_rates(STUDY, CELLS, SEEDS, results)
    assert list(rates.columns) == ["label", "layer", "rate", "rate_std"]
    # only the LIF rows, each cell's layers in forward (file) order, not sorted
    assert list(rates["layer"]) == list(LIF) * 2
    assert list(rates["label"]) == ["none / direct / T=8"] * 3 + ["TCSA / direct / T=8"] * 3
    assert rates["rate"].tolist() == pytest.approx([0.32, 0.22, 0.12, 0.10, 0.07, 0.04])
    assert rates["rate_std"].tolist() == pytest.approx([0.02, 0.02, 0.02, 0.0, 0.02, 0.02])


def test_layer_rates_single_seed_has_nan_std(results):
    rates = layer_rates(STUDY, CELLS, [1], results)
    assert rates["rate"].tolist() == pytest.approx([0.32, 0.22, 0.12, 0.10, 0.07, 0.04])
    assert rates["rate_std"].isna().all()


def test_layer_rates_without_lif_rows_says_so(results):
    for cell in CELLS:
        for seed in SEEDS:
            path = results / STUDY / cell["id"] / f"seed{seed}" / "energy.json"
            energy = json.loads(path.read_text())
            energy["layers"] = [r for r in energy["layers"] if r["kind"] != "lif"]
            path.write_text(json.dumps(energy))
    with pytest.raises(ValueError, match="no spiking layers"):
        layer_rates(STUDY, CELLS, SEEDS, results)


def test_layer_rates_missing_energy_file(results):
    missing = results / STUDY / NONE["id"] / "seed0" / "energy.json"
    missing.unlink()
    with pytest.raises(FileNotFoundError, match="spikeattn energy"):
        layer_rates(STUDY, CELLS, SEEDS, results)


# -- histories ---------------------------------------------------------------------------------
def test_histories_concatenates_every_epoch_with_label_and_seed(results):
    frame = histories(STUDY, CELLS, SEEDS, results)
    assert len(frame) == 2 * 3 * 3  # cells x seeds x epochs
    assert list(frame.columns) == [
        "epoch",
        "lr",
        "train_loss",
        "train_acc",
        "test_loss",
        "test_acc",
        "label",
        "seed",
        "status",
    ]
    assert set(frame["status"]) == {"completed"}  # no status in metrics.json: completed
    assert frame.index.tolist() == list(range(18))
    assert list(frame["label"]) == ["none / direct / T=8"] * 9 + ["TCSA / direct / T=8"] * 9
    assert list(frame["seed"]) == [s for s in SEEDS for _ in range(3)] * 2
    assert list(frame["epoch"]) == [1, 2, 3] * 6
    last = frame[frame["epoch"] == 3]
    assert last["test_acc"].tolist() == pytest.approx(ACC["none"] + ACC["TCSA"])
    seed1 = frame[(frame["seed"] == 1) & (frame["label"] == "TCSA / direct / T=8")]
    assert seed1["train_loss"].tolist() == pytest.approx([2.0, 1.5, 1.0 / 3 + 1])


def test_histories_accepts_a_one_shot_iterable_of_seeds(results):
    frame = histories(STUDY, CELLS, iter(SEEDS), results)
    assert len(frame) == 18
    assert frame.groupby("label", sort=False)["seed"].nunique().tolist() == [3, 3]


def test_histories_missing_file_names_path_and_train_command(results):
    missing = results / STUDY / TCSA["id"] / "seed1" / "history.csv"
    missing.unlink()
    with pytest.raises(FileNotFoundError) as err:
        histories(STUDY, CELLS, SEEDS, results)
    message = str(err.value)
    assert str(missing) in message
    assert f"spikeattn train --study {STUDY} --cell {TCSA['id']} --seed 1" in message


# -- diverged runs -----------------------------------------------------------------------------
def test_runs_frame_keeps_a_diverged_seed_with_status_and_no_numbers(results):
    _write_seed(results, TCSA, 1, 1, status="diverged", diverged_epoch=3, loss="inf")
    runs = runs_frame(STUDY, CELLS, SEEDS, results)
    assert len(runs) == 6  # the diverged run keeps its row
    assert runs["status"].tolist() == ["completed"] * 4 + ["diverged", "completed"]
    bad = runs.iloc[4]
    assert bad["seed"] == 1 and bad["diverged_epoch"] == 3
    # its final/best in metrics.json are an earlier epoch's: never a number to average
    for column in ("acc", "best_acc", "firing_rate", "spikes", "energy_uj", "macs", "sops"):
        assert math.isnan(bad[column]), column
    assert runs["diverged_epoch"].drop(index=4).isna().all()
    done = runs.drop(index=4)
    assert done["acc"].tolist() == pytest.approx([96.12, 96.47, 95.77, 97.00, 97.20])
    assert done["energy_uj"].tolist() == ENERGY["none"] + [ENERGY["TCSA"][0], ENERGY["TCSA"][2]]


def test_runs_frame_diverged_in_epoch_one_with_null_finals(results):
    folder = _write_seed(results, NONE, 0, 0, status="diverged", diverged_epoch=1)
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["final"]["test_acc"] is None and metrics["best"]["epoch"] is None
    assert (folder / "history.csv").read_text().strip().count("\n") == 0  # header only
    runs = runs_frame(STUDY, CELLS, SEEDS, results)
    first = runs.iloc[0]
    assert first["status"] == "diverged" and first["diverged_epoch"] == 1
    assert math.isnan(first["acc"]) and math.isnan(first["best_acc"])


def test_runs_frame_old_files_without_status_are_completed(results, tmp_path):
    old = tmp_path / "old"
    for cell in CELLS:
        for i, seed in enumerate(SEEDS):
            folder = _write_seed(old, cell, seed, i, status=None)
            assert "status" not in (folder / "metrics.json").read_text()
            assert "status" not in (folder / "energy.json").read_text()
    frame = runs_frame(STUDY, CELLS, SEEDS, old)
    assert set(frame["status"]) == {"completed"}
    pd.testing.assert_frame_equal(frame, runs_frame(STUDY, CELLS, SEEDS, results))


def test_runs_frame_refuses_stale_energy_of_a_diverged_run(results):
    folder = _write_seed(results, TCSA, 2, 2, status="diverged")
    energy = json.loads((folder / "energy.json").read_text())
    energy.update(status="completed", energy_uj=0.5)  # left over from an earlier run
    (folder / "energy.json").write_text(json.dumps(energy))
    with pytest.raises(ValueError, match="stale, re-run the energy stage") as err:
        runs_frame(STUDY, CELLS, SEEDS, results)
    assert str(folder) in str(err.value)


def test_runs_frame_refuses_energy_of_an_earlier_checkpoint(results):
    folder = results / STUDY / TCSA["id"] / "seed0"
    metrics = json.loads((folder / "metrics.json").read_text())
    metrics.update(checkpoint_sha256="9e" * 32, final={"test_acc": 0.5})  # trained again by hand
    (folder / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(ResultError, match="energy.json is stale") as err:
        runs_frame(STUDY, CELLS, SEEDS, results)
    assert str(folder / "energy.json") in str(err.value) and str(folder / "metrics.json") in str(
        err.value
    )


def test_runs_frame_names_a_metrics_json_without_final(results):
    path = results / STUDY / NONE["id"] / "seed1" / "metrics.json"
    metrics = json.loads(path.read_text())
    del metrics["final"]
    path.write_text(json.dumps(metrics))
    with pytest.raises(ResultError, match=re.escape(f"{path}: no 'final'") + ".*re-run the train"):
        runs_frame(STUDY, CELLS, SEEDS, results)


def test_runs_frame_refuses_an_unknown_status(results):
    path = results / STUDY / NONE["id"] / "seed0" / "metrics.json"
    metrics = json.loads(path.read_text())
    metrics["status"] = "running"
    path.write_text(json.dumps(metrics))
    with pytest.raises(ValueError, match="unknown status 'running'"):
        runs_frame(STUDY, CELLS, SEEDS, results)


@pytest.mark.parametrize("with_layers", [False, True])
def test_layer_rates_leave_out_diverged_seeds(results, with_layers):
    folder = _write_seed(results, NONE, 2, 2, status="diverged")
    if with_layers:  # the status decides, not an empty layer list
        energy = json.loads((folder / "energy.json").read_text())
        energy["layers"] = _layers((0.9, 0.9, 0.9))
        (folder / "energy.json").write_text(json.dumps(energy))
    rates = layer_rates(STUDY, CELLS, SEEDS, results)
    # none: seeds 0 and 1 only (0.30/0.32, 0.20/0.22, 0.10/0.12); TCSA unchanged
    assert rates["rate"].tolist() == pytest.approx([0.31, 0.21, 0.11, 0.10, 0.07, 0.04])
    assert rates["rate_std"].iloc[:3].tolist() == pytest.approx([0.02 / math.sqrt(2)] * 3)


def test_layer_rates_of_a_fully_diverged_cell_and_study(results):
    for i, seed in enumerate(SEEDS):
        _write_seed(results, TCSA, seed, i, status="diverged")
    rates = layer_rates(STUDY, CELLS, SEEDS, results)
    assert set(rates["label"]) == {"none / direct / T=8"}  # no rows, no error
    for i, seed in enumerate(SEEDS):
        _write_seed(results, NONE, seed, i, status="diverged", diverged_epoch=1)
    empty = layer_rates(STUDY, CELLS, SEEDS, results)
    assert empty.empty and list(empty.columns) == ["label", "layer", "rate", "rate_std"]


def test_histories_keep_a_diverged_runs_completed_epochs_with_status(results):
    _write_seed(results, TCSA, 1, 1, status="diverged", diverged_epoch=3)  # epochs 1, 2 kept
    _write_seed(results, NONE, 0, 0, status="diverged", diverged_epoch=1)  # header only
    frame = histories(STUDY, CELLS, SEEDS, results)
    assert len(frame) == 18 - 1 - 3
    tcsa1 = frame[(frame["label"] == "TCSA / direct / T=8") & (frame["seed"] == 1)]
    assert tcsa1["epoch"].tolist() == [1, 2] and set(tcsa1["status"]) == {"diverged"}
    assert not ((frame["label"] == "none / direct / T=8") & (frame["seed"] == 0)).any()
    assert frame.loc[frame["seed"] != 1, "status"].eq("completed").all()
    # the header-only file did not turn the numbers into objects
    assert frame["test_acc"].dtype == float and frame["epoch"].dtype.kind == "i"


def test_histories_when_every_run_diverged_in_epoch_one(results):
    for cell in CELLS:
        for i, seed in enumerate(SEEDS):
            _write_seed(results, cell, seed, i, status="diverged", diverged_epoch=1)
    frame = histories(STUDY, CELLS, SEEDS, results)
    assert frame.empty
    assert {"epoch", "train_loss", "test_acc", "label", "seed", "status"} <= set(frame.columns)
