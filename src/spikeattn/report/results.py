"""Per-seed result files as pandas frames: the inputs of paper tables, ablations and figures.

Like tables.py, only `results/<study>/<cell>/seed<k>/` files are read (never MLflow), and a
missing file fails before anything is read, naming the command that makes it.

Every run keeps its row, with a `status` (completed or diverged): a diverged run's numbers
are NaN (its files hold nulls), so callers filter on `status` before averaging and count the
diverged runs rather than losing them.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

from ..io import read_json
from ..paths import run_dir
from .tables import (AXES, COMPLETED, _cell_dict, _label_axes, _cell_label, _load, num,
                     run_status)

RUN_COLUMNS = ("study", "cell", *AXES, "seed", "status", "diverged_epoch", "acc", "best_acc",
               "firing_rate", "spikes", "energy_uj", "macs", "sops", "epochs")


def runs_frame(study: str, cells: Iterable[Any], seeds: Iterable[int],
               results_root: Path) -> pd.DataFrame:
    """One row per cell x seed: accuracies in %, spikes and energy per test sample."""
    cells = [_cell_dict(c) for c in cells]
    return frame_of_runs(study, cells, _load(study, cells, [int(s) for s in seeds],
                                             Path(results_root)))


def _measured(done: bool, value: Any) -> Any:
    """A completed run's value as it is (NaN where null); NaN for a diverged run, whatever
    its files hold."""
    return value if done and value is not None else math.nan


def frame_of_runs(study: str, cells: list[dict], runs: Mapping[str, list]) -> pd.DataFrame:
    """runs_frame from result files already read by tables._load ({cell id: [(metrics,
    energy, path) per seed]}), so a caller that needs both reads each file once.

    A diverged run has status 'diverged', the 1-based epoch its loss became non-finite in
    diverged_epoch (else NaN), and NaN for every measured value: its final and best
    accuracies are those of an earlier epoch, not of the trained model, and must never be
    averaged with the completed runs."""
    rows = []
    for cell in cells:
        for metrics, energy, _ in runs[cell["id"]]:
            status = run_status(metrics)
            done = status == COMPLETED
            where = {} if done else (metrics.get("diverged") or {})
            rate = energy.get("mean_firing_rate")  # measured by the energy stage: preferred
            rate = metrics.get("mean_firing_rate") if rate is None else rate
            rows.append({
                "study": study, "cell": cell["id"], **{a: cell[a] for a in AXES},
                "seed": int(metrics["seed"]), "status": status,
                "diverged_epoch": num(where.get("epoch")),
                "acc": 100.0 * _measured(done, metrics["final"].get("test_acc")),
                "best_acc": 100.0 * _measured(done, metrics["best"].get("test_acc")),
                "firing_rate": _measured(done, rate),
                "spikes": _measured(done, energy.get("spikes")),
                **{key: _measured(done, energy.get(key)) for key in ("energy_uj", "macs", "sops")},
                "epochs": metrics.get("epochs"),
            })
    return pd.DataFrame(rows, columns=list(RUN_COLUMNS))


def _labels(cells: list[dict]) -> dict[str, str]:
    frame = pd.DataFrame(cells)
    axes = _label_axes(frame)
    return {c["id"]: _cell_label(pd.Series(c), axes) for c in cells}


def layer_rates(study: str, cells: Iterable[Any], seeds: Iterable[int],
                results_root: Path) -> pd.DataFrame:
    """Firing rate of each spiking layer (energy.json's LIF rows), mean and std over the
    completed seeds: columns label, layer, rate, rate_std; layers in forward order.

    Diverged runs are left out; a cell whose seeds all diverged has no rows, and when every
    run of the study diverged the frame is empty (the figure says so instead of failing)."""
    cells = [_cell_dict(c) for c in cells]
    runs = _load(study, cells, [int(s) for s in seeds], Path(results_root))
    labels = _labels(cells)
    rows = []
    completed = 0
    for cell in cells:
        for metrics, energy, _ in runs[cell["id"]]:
            if run_status(metrics) != COMPLETED:
                continue
            completed += 1
            for layer in energy.get("layers") or []:
                if layer.get("kind") == "lif":
                    rows.append({"label": labels[cell["id"]], "layer": layer["layer"],
                                 "rate": num(layer.get("firing_rate"))})
    if not completed:
        return pd.DataFrame(columns=["label", "layer", "rate", "rate_std"])
    if not rows:
        raise ValueError(f"study {study!r}: energy.json files list no spiking layers; re-run "
                         "the energy stage (`snakemake --cores N`) to write per-layer rates")
    frame = pd.DataFrame(rows)
    grouped = frame.groupby(["label", "layer"], sort=False)["rate"]
    return (grouped.agg(rate="mean", rate_std="std").reset_index())


def histories(study: str, cells: Iterable[Any], seeds: Iterable[int],
              results_root: Path) -> pd.DataFrame:
    """Every epoch of every run (history.csv), with the cell's row label, the seed and the
    run's status (metrics.json, written with history.csv). A diverged run's history holds
    its completed epochs only, possibly none."""
    cells = [_cell_dict(c) for c in cells]
    seeds = [int(s) for s in seeds]  # iterated once per cell
    labels = _labels(cells)
    frames, columns = [], None
    for cell in cells:
        for seed in seeds:
            folder = run_dir(study, cell["id"], seed, Path(results_root))
            hint = f"run `spikeattn train --study {study} --cell {cell['id']} --seed {seed}`"
            for name in ("history.csv", "metrics.json"):
                if not (folder / name).is_file():
                    raise FileNotFoundError(f"{folder / name}: missing; {hint}")
            status = run_status(read_json(folder / "metrics.json"), folder / "metrics.json")
            frame = pd.read_csv(folder / "history.csv")
            frame = frame.assign(label=labels[cell["id"]], seed=int(seed), status=status)
            columns = columns or list(frame.columns)
            if len(frame):  # a header-only history would turn every column into objects
                frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)

