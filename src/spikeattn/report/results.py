"""Per-seed result files as pandas frames: the inputs of paper tables, ablations and figures.

Like tables.py, only `results/<study>/<cell>/seed<k>/` files are read (never MLflow), and a
missing file fails before anything is read, naming the command that makes it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

from ..paths import run_dir
from .tables import AXES, _cell_dict, _label_axes, _cell_label, _load

RUN_COLUMNS = ("study", "cell", *AXES, "seed", "acc", "best_acc", "firing_rate", "spikes",
               "energy_uj", "macs", "sops", "epochs")


def runs_frame(study: str, cells: Iterable[Any], seeds: Iterable[int],
               results_root: Path) -> pd.DataFrame:
    """One row per cell x seed: accuracies in %, spikes and energy per test sample."""
    cells = [_cell_dict(c) for c in cells]
    return frame_of_runs(study, cells, _load(study, cells, [int(s) for s in seeds],
                                             Path(results_root)))


def frame_of_runs(study: str, cells: list[dict], runs: Mapping[str, list]) -> pd.DataFrame:
    """runs_frame from result files already read by tables._load ({cell id: [(metrics,
    energy, path) per seed]}), so a caller that needs both reads each file once."""
    rows = []
    for cell in cells:
        for metrics, energy, _ in runs[cell["id"]]:
            rows.append({
                "study": study, "cell": cell["id"], **{a: cell[a] for a in AXES},
                "seed": int(metrics["seed"]),
                "acc": 100.0 * metrics["final"]["test_acc"],
                "best_acc": 100.0 * metrics["best"]["test_acc"],
                "firing_rate": energy.get("mean_firing_rate", metrics["mean_firing_rate"]),
                "spikes": energy.get("spikes", float("nan")),
                "energy_uj": energy["energy_uj"], "macs": energy["macs"], "sops": energy["sops"],
                "epochs": metrics.get("epochs"),
            })
    return pd.DataFrame(rows, columns=list(RUN_COLUMNS))


def _labels(cells: list[dict]) -> dict[str, str]:
    frame = pd.DataFrame(cells)
    axes = _label_axes(frame)
    return {c["id"]: _cell_label(pd.Series(c), axes) for c in cells}


def layer_rates(study: str, cells: Iterable[Any], seeds: Iterable[int],
                results_root: Path) -> pd.DataFrame:
    """Firing rate of each spiking layer (energy.json's LIF rows), mean and std over seeds:
    columns label, layer, rate, rate_std; layers in forward order."""
    cells = [_cell_dict(c) for c in cells]
    runs = _load(study, cells, [int(s) for s in seeds], Path(results_root))
    labels = _labels(cells)
    rows = []
    for cell in cells:
        for _, energy, _ in runs[cell["id"]]:
            for layer in energy.get("layers", []):
                if layer.get("kind") == "lif":
                    rows.append({"label": labels[cell["id"]], "layer": layer["layer"],
                                 "rate": layer["firing_rate"]})
    if not rows:
        raise ValueError(f"study {study!r}: energy.json files list no spiking layers; re-run "
                         "the energy stage (`snakemake --cores N`) to write per-layer rates")
    frame = pd.DataFrame(rows)
    grouped = frame.groupby(["label", "layer"], sort=False)["rate"]
    return (grouped.agg(rate="mean", rate_std="std").reset_index())


def histories(study: str, cells: Iterable[Any], seeds: Iterable[int],
              results_root: Path) -> pd.DataFrame:
    """Every epoch of every run (history.csv), with the cell's row label and the seed."""
    cells = [_cell_dict(c) for c in cells]
    seeds = [int(s) for s in seeds]  # iterated once per cell
    labels = _labels(cells)
    frames = []
    for cell in cells:
        for seed in seeds:
            path = run_dir(study, cell["id"], seed, Path(results_root)) / "history.csv"
            if not path.is_file():
                raise FileNotFoundError(f"{path}: missing; run `spikeattn train --study {study} "
                                        f"--cell {cell['id']} --seed {seed}`")
            frame = pd.read_csv(path)
            frames.append(frame.assign(label=labels[cell["id"]], seed=int(seed)))
    return pd.concat(frames, ignore_index=True)

