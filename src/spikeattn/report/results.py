"""The reader of result files: results/<study>/<cell>/seed<k>/ as Python objects and frames.

Every table, figure and caption of the report reads the per-seed files through this module
(never MLflow), so they can be rebuilt on any machine, without a GPU or a tracking server.
What the files hold is defined in `spikeattn.records`; what this module adds is the checks a
set of runs must pass before anything is aggregated:

- a missing file fails before anything is read, listing every missing file and the command
  that makes it;
- a file whose study/cell/seed disagree with its path (copied or moved) is refused;
- a metrics.json missing a key the tables need (records.METRICS_REQUIRED) is refused;
- metrics.json and energy.json of one run must describe the same trained model: each names
  the checkpoint (`checkpoint_sha256`), and an energy.json that measured another checkpoint
  (left over from an earlier training), or disagrees on whether the run diverged, is refused.

Every run keeps its row, with a `status` (completed or diverged): a diverged run's numbers
are NaN (its files hold nulls), so callers filter on `status` before averaging and count the
diverged runs rather than losing them. Firing rates come from energy.json, their one source.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

from .. import records
from ..config import GRID_AXES as AXES
from ..paths import run_dir
from ..records import COMPLETED, DIVERGED, ENERGY_FILE, METRICS_FILE, ResultError, run_status
from .formatting import cell_label, label_axes

# {cell id: [(metrics, energy, energy.json path) per seed]}, as load_runs returns it
Runs = Mapping[str, list[tuple[dict, dict, Path]]]


# -- reading and checking ----------------------------------------------------------------------
def cell_dict(cell: Any) -> dict[str, Any]:
    """Accept the brief's dicts or `config.Cell` objects, so callers need not convert."""
    if isinstance(cell, Mapping):
        return {"id": cell["id"], **{axis: cell[axis] for axis in AXES}}
    return {"id": cell.id, **{axis: getattr(cell, axis) for axis in AXES}}


def _check_inputs(study: str, cells: list[dict], seeds: list[int], results_root: Path) -> None:
    """Fail before reading anything, listing every missing file and the command that makes it."""
    missing = [
        (path, records.stage_hint(study, c["id"], seed, name))
        for c in cells
        for seed in seeds
        for name in (METRICS_FILE, ENERGY_FILE)
        if not (path := run_dir(study, c["id"], seed, results_root) / name).is_file()
    ]
    if not missing:
        return
    shown = "\n".join(f"  {path}  (run: {hint})" for path, hint in missing[:10])
    more = f"\n  ... and {len(missing) - 10} more" if len(missing) > 10 else ""
    raise FileNotFoundError(
        f"study {study!r}: {len(missing)} result file(s) missing, no report written:\n"
        f"{shown}{more}\nRun the missing stages, or all of them with "
        f"`snakemake --cores N --config studies={study}`."
    )


def _check_path(path: Path, data: Mapping[str, Any], study: str, cell_id: str, seed: int) -> None:
    """The file describes the cell x seed its path says it does."""
    expected = {"study": study, "cell": cell_id, "seed": seed}
    for key, want in expected.items():
        if key in data and data[key] != want:
            raise ResultError(
                f"{path}: {key} is {data[key]!r} but its path says {want!r}; "
                "the file was copied or moved, re-run its stage"
            )


def _check_status(folder: Path, metrics: Mapping[str, Any], energy: Mapping[str, Any]) -> None:
    """metrics.json and energy.json of one run must agree on whether it diverged; they differ
    only when energy.json is left over from an earlier training run."""
    trained = run_status(metrics, folder / METRICS_FILE)
    measured = run_status(energy, folder / ENERGY_FILE)
    if trained != measured:
        raise ResultError(
            f"{folder}: metrics.json says the run {trained} but energy.json says "
            f"{measured}; energy.json is stale, re-run the energy stage"
        )


def _check_checkpoint(
    folder: Path, metrics: Mapping[str, Any], energy: Mapping[str, Any], hint: str
) -> None:
    """energy.json measured the checkpoint metrics.json was trained into; they differ when the
    run was trained again after its energy was measured. Files from before checkpoints were
    named (no checkpoint_sha256 in metrics.json) cannot be compared."""
    trained = metrics.get("checkpoint_sha256")
    measured = energy.get("checkpoint_sha256")
    if trained is None or measured == trained:
        return
    measured_text = f"checkpoint {measured[:16]}" if measured else "an unnamed checkpoint"
    raise ResultError(
        f"{folder / ENERGY_FILE} measured {measured_text} but "
        f"{folder / METRICS_FILE} belongs to checkpoint {trained[:16]}: energy.json "
        f"is stale (from an earlier training of this run); re-run the energy stage "
        f"(`{hint}`)"
    )


def load_runs(
    study: str, cells: Iterable[Any], seeds: Iterable[int], results_root: Path
) -> dict[str, list[tuple[dict, dict, Path]]]:
    """{cell_id: [(metrics, energy, energy_path) per seed]} for the current grid only (`cells`:
    dicts with id and the grid axes, or `config.Cell`s), every file checked (see above)."""
    cells = [cell_dict(c) for c in cells]
    seeds = [int(s) for s in seeds]
    results_root = Path(results_root)
    _check_inputs(study, cells, seeds, results_root)
    runs: dict[str, list[tuple[dict, dict, Path]]] = {}
    for cell in cells:
        runs[cell["id"]] = []
        for seed in seeds:
            folder = run_dir(study, cell["id"], seed, results_root)
            metrics = records.read_metrics(folder)
            _check_path(folder / METRICS_FILE, metrics, study, cell["id"], seed)
            energy = records.read_energy(folder)
            _check_path(folder / ENERGY_FILE, energy, study, cell["id"], seed)
            records.check_metrics(
                folder / METRICS_FILE,
                metrics,
                records.stage_hint(study, cell["id"], seed, METRICS_FILE),
            )
            _check_status(folder, metrics, energy)
            _check_checkpoint(
                folder, metrics, energy, records.stage_hint(study, cell["id"], seed, ENERGY_FILE)
            )
            runs[cell["id"]].append((metrics, energy, folder / ENERGY_FILE))
    return runs


def diverged_runs(cells: Iterable[Any], runs: Runs) -> list[dict[str, Any]]:
    """Every diverged run, in grid then seed order: {cell, seed, epoch, loss} (epoch and loss
    None where metrics.json does not say)."""
    out = []
    for cell in map(cell_dict, cells):
        for metrics, _, _ in runs[cell["id"]]:
            if run_status(metrics) == DIVERGED:
                where = metrics.get("diverged") or {}
                out.append(
                    {
                        "cell": cell["id"],
                        "seed": int(metrics["seed"]),
                        "epoch": where.get("epoch"),
                        "loss": where.get("loss"),
                    }
                )
    return out


def energy_conventions(runs: Runs) -> str:
    """The energy conventions text of every run; one caption cannot describe two different
    conventions, so runs measured under different ones are refused."""
    first: tuple[str, Path] | None = None
    for seed_runs in runs.values():
        for _, energy, path in seed_runs:
            text = str(energy.get("conventions", "")).strip()
            if first is None:
                first = (text, path)
            elif text != first[0]:
                raise ValueError(
                    f"energy conventions differ between {first[1]} and {path}; "
                    "re-run the energy stage so every cell uses the same ones"
                )
    return first[0] if first else ""


def num(value: Any) -> float:
    """A result-file number as a float; null (a diverged run's values) becomes NaN."""
    return math.nan if value is None else float(value)


# -- frames ------------------------------------------------------------------------------------
RUN_COLUMNS = (
    "study",
    "cell",
    *AXES,
    "seed",
    "status",
    "diverged_epoch",
    "acc",
    "best_acc",
    "firing_rate",
    "spikes",
    "energy_uj",
    "macs",
    "sops",
    "epochs",
)


def runs_frame(
    study: str, cells: Iterable[Any], seeds: Iterable[int], results_root: Path
) -> pd.DataFrame:
    """One row per cell x seed: accuracies in %, spikes and energy per test sample."""
    cells = [cell_dict(c) for c in cells]
    return frame_of_runs(study, cells, load_runs(study, cells, seeds, results_root))


def _measured(done: bool, value: Any) -> Any:
    """A completed run's value as it is (NaN where null); NaN for a diverged run, whatever
    its files hold."""
    return value if done and value is not None else math.nan


def frame_of_runs(study: str, cells: list[dict], runs: Runs) -> pd.DataFrame:
    """runs_frame from result files already read by load_runs, so a caller that needs both
    the runs and their frame reads each file once.

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
            rows.append(
                {
                    "study": study,
                    "cell": cell["id"],
                    **{a: cell[a] for a in AXES},
                    "seed": int(metrics["seed"]),
                    "status": status,
                    "diverged_epoch": num(where.get("epoch")),
                    "acc": 100.0 * _measured(done, metrics["final"].get("test_acc")),
                    "best_acc": 100.0 * _measured(done, metrics["best"].get("test_acc")),
                    "firing_rate": _measured(done, energy.get("mean_firing_rate")),
                    "spikes": _measured(done, energy.get("spikes")),
                    **{
                        key: _measured(done, energy.get(key))
                        for key in ("energy_uj", "macs", "sops")
                    },
                    "epochs": metrics.get("epochs"),
                }
            )
    return pd.DataFrame(rows, columns=list(RUN_COLUMNS))


def _labels(cells: list[dict]) -> dict[str, str]:
    axes = label_axes(pd.DataFrame(cells))
    return {c["id"]: cell_label(pd.Series(c), axes) for c in cells}


def layer_rates(
    study: str, cells: Iterable[Any], seeds: Iterable[int], results_root: Path
) -> pd.DataFrame:
    """Firing rate of each spiking layer (energy.json's LIF rows), mean and std over the
    completed seeds: columns label, layer, rate, rate_std; layers in forward order.

    Diverged runs are left out; a cell whose seeds all diverged has no rows, and when every
    run of the study diverged the frame is empty (the figure says so instead of failing)."""
    cells = [cell_dict(c) for c in cells]
    runs = load_runs(study, cells, seeds, results_root)
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
                    rows.append(
                        {
                            "label": labels[cell["id"]],
                            "layer": layer["layer"],
                            "rate": num(layer.get("firing_rate")),
                        }
                    )
    if not completed:
        return pd.DataFrame(columns=["label", "layer", "rate", "rate_std"])
    if not rows:
        raise ValueError(
            f"study {study!r}: energy.json files list no spiking layers; re-run "
            "the energy stage (`snakemake --cores N`) to write per-layer rates"
        )
    frame = pd.DataFrame(rows)
    grouped = frame.groupby(["label", "layer"], sort=False)["rate"]
    return grouped.agg(rate="mean", rate_std="std").reset_index()


def histories(
    study: str, cells: Iterable[Any], seeds: Iterable[int], results_root: Path
) -> pd.DataFrame:
    """Every epoch of every run (history.csv), with the cell's row label, the seed and the
    run's status (metrics.json, written with history.csv). A diverged run's history holds
    its completed epochs only, possibly none."""
    cells = [cell_dict(c) for c in cells]
    seeds = [int(s) for s in seeds]  # iterated once per cell
    labels = _labels(cells)
    frames, columns = [], None
    for cell in cells:
        for seed in seeds:
            folder = run_dir(study, cell["id"], seed, Path(results_root))
            for name in (records.HISTORY_FILE, METRICS_FILE):
                if not (folder / name).is_file():
                    raise FileNotFoundError(
                        f"{folder / name}: missing; run "
                        f"`{records.stage_hint(study, cell['id'], seed, name)}`"
                    )
            status = run_status(records.read_metrics(folder), folder / METRICS_FILE)
            frame = records.read_history(folder)
            frame = frame.assign(label=labels[cell["id"]], seed=int(seed), status=status)
            columns = columns or list(frame.columns)
            if len(frame):  # a header-only history would turn every column into objects
                frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)
