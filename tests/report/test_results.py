"""runs_frame, layer_rates and histories on small hand-written per-seed result files."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from spikeattn.report.results import RUN_COLUMNS, histories, layer_rates, runs_frame

STUDY = "demo-dvs"
SEEDS = [0, 1, 2]
CONVENTIONS = "E_MAC = 4.6 pJ, E_AC = 0.9 pJ (45 nm)"


def _cell(attention: str) -> dict:
    cell = {"dataset": "digits-dvs", "backbone": "demo_cnn", "attention": attention,
            "coding": "direct", "T": 8}
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
        rows.append({"layer": name.replace("lif", "conv"), "kind": "conv", "type": "Conv2d",
                     "input": "spikes", "firing_rate": 1.0, "spike_count": 0.0,
                     "sops": 1000.0, "macs": 0.0, "energy_pj": 900.0})
        rows.append({"layer": name, "kind": "lif", "type": "LIF", "input": "real",
                     "firing_rate": rate, "spike_count": 100.0 * rate, "sops": 0.0,
                     "macs": 0.0, "energy_pj": 0.0})
    return rows


def _write_seed(root, cell: dict, seed: int, i: int, study: str = STUDY) -> None:
    """metrics.json, energy.json and history.csv of one seed (values from the tables above)."""
    att = cell["attention"]
    folder = root / study / cell["id"] / f"seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    rates = RATES[att][i]
    metrics = {"study": study, "cell": cell["id"], "seed": seed,
               "final": {"test_acc": ACC[att][i], "test_loss": 0.1},
               "best": {"test_acc": BEST[att][i], "epoch": 2},
               "mean_firing_rate": 0.999,  # energy.json's value wins: see test below
               "params": 1000, "epochs": 3}
    energy = {"study": study, "cell": cell["id"], "seed": seed,
              "energy_uj": ENERGY[att][i], "macs": 2_000_000, "sops": 1_500_000.0 + i,
              "mean_firing_rate": float(np.mean(rates)), "spikes": SPIKES[att][i],
              "conventions": CONVENTIONS, "layers": _layers(rates)}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "energy.json").write_text(json.dumps(energy))
    lines = ["epoch,lr,train_loss,train_acc,test_loss,test_acc"]
    for epoch in (1, 2, 3):
        lines.append(f"{epoch},0.001,{1.0 / epoch + i},{0.5 + 0.1 * epoch},0.5,"
                     f"{ACC[att][i] - 0.01 * (3 - epoch)}")
    (folder / "history.csv").write_text("\n".join(lines) + "\n")


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
    # energy.json's firing rate (measured with the energy stage) is preferred over metrics'
    assert runs["firing_rate"].iloc[0] == pytest.approx(0.2)


def test_runs_frame_accepts_config_cells(results):
    from spikeattn.config import Cell

    cells = [Cell(study=STUDY, **{k: c[k] for k in ("dataset", "backbone", "attention",
                                                    "coding", "T")}) for c in CELLS]
    pd.testing.assert_frame_equal(runs_frame(STUDY, cells, SEEDS, results),
                                  runs_frame(STUDY, CELLS, SEEDS, results))


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
    assert list(frame.columns) == ["epoch", "lr", "train_loss", "train_acc", "test_loss",
                                   "test_acc", "label", "seed"]
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
