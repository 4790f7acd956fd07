"""The result files of one run (results/<study>/<cell>/seed<k>/): what each holds, in one place.

- metrics.json (train job): the run's coordinates, `status`, final and best accuracies,
  parameter count, the training settings as run, and the digest of the checkpoint it wrote.
- history.csv (train job): one row per completed epoch, HISTORY_COLUMNS.
- energy.json (energy job): operation counts, energy, and the firing rates (the only source
  of firing rates: every table reads them here), for the checkpoint metrics.json names.

The jobs write these files and the report reads them through the functions below, so a field
name, a status or a required key is changed here and nowhere else. The file names themselves
are in `paths` (Snakemake rules declare them as outputs). pandas is imported only where
history.csv is written or read, so checking a metrics.json stays cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from .io import atomic_path, read_json, write_json
from .paths import ENERGY_FILE, TRAIN_FILES

if TYPE_CHECKING:
    import pandas as pd

METRICS_FILE, HISTORY_FILE, CHECKPOINT_FILE = TRAIN_FILES

# A run's `status` in metrics.json and energy.json (absent in older files: completed). A
# diverged run (training loss NaN or infinite) keeps its files, its numbers null.
COMPLETED, DIVERGED = "completed", "diverged"
RUN_STATUSES = (COMPLETED, DIVERGED)

# peak_memory_mb: the epoch's peak training memory on CUDA, MiB (empty on CPU: not measured)
HISTORY_COLUMNS = [
    "epoch",
    "lr",
    "train_loss",
    "train_acc",
    "test_loss",
    "test_acc",
    "peak_memory_mb",
]

# metrics.json "final": the last epoch's values; "best": the best test accuracy and its epoch.
FINAL_KEYS = ("test_acc", "test_loss", "train_acc", "train_loss")
# What the tables need from every metrics.json: {key: keys inside it}.
METRICS_REQUIRED = {"seed": (), "final": ("test_acc",), "best": ("test_acc",)}

# energy.json's totals per test sample (also logged to MLflow), and every number that is null
# in a diverged run's energy.json (its weights say nothing about the cell).
ENERGY_TOTALS = ("energy_uj", "energy_mac_uj", "energy_ac_uj", "macs", "sops", "spikes")
ENERGY_NUMBERS = (*ENERGY_TOTALS, "samples", "mean_firing_rate")


class ResultError(ValueError):
    """A result file is incomplete, stale, or disagrees with its run's other file; the message
    names the file(s) and the stage to re-run."""


def run_status(data: Mapping[str, Any], path: Path | str = "<result file>") -> str:
    """'completed' or 'diverged': a result file's status (absent in older files: completed)."""
    status = data.get("status", COMPLETED)
    if status not in RUN_STATUSES:
        raise ResultError(
            f"{path}: unknown status {status!r} (expected one of "
            f"{', '.join(RUN_STATUSES)}); re-run its stage"
        )
    return status


def status_of(diverged: bool) -> str:
    """The status a job writes: diverged when training stopped at a non-finite loss."""
    return DIVERGED if diverged else COMPLETED


def stage_hint(study: str, cell_id: str, seed: int, name: str) -> str:
    """The command that (re)writes result file `name` of one run."""
    stage = "energy" if name == ENERGY_FILE else "train"
    return f"spikeattn {stage} --study {study} --cell {cell_id} --seed {seed}"


def check_metrics(path: Path, data: Mapping[str, Any], hint: str) -> None:
    """Every key of METRICS_REQUIRED is there, so a damaged file fails here with its name, not as
    a bare KeyError while aggregating."""
    for key, inner in METRICS_REQUIRED.items():
        missing = (
            [key]
            if key not in data
            else [
                f"{key}.{k}"
                for k in inner
                if not isinstance(data[key], Mapping) or k not in data[key]
            ]
        )
        if missing:
            raise ResultError(
                f"{path}: no {missing[0]!r}; the file is incomplete or damaged: "
                f"re-run the train stage (`{hint}`)"
            )


# -- writing (the train and energy jobs) -------------------------------------------------------
def write_metrics(folder: Path, metrics: Mapping[str, Any]) -> Path:
    """folder/metrics.json, atomically."""
    path = Path(folder) / METRICS_FILE
    write_json(path, metrics)
    return path


def write_history(folder: Path, rows: Iterable[Mapping[str, Any]]) -> Path:
    """folder/history.csv: one row per completed epoch, HISTORY_COLUMNS in order (a header
    only when no epoch completed)."""
    import pandas as pd

    path = Path(folder) / HISTORY_FILE
    with atomic_path(path) as tmp:
        pd.DataFrame(list(rows), columns=HISTORY_COLUMNS).to_csv(tmp, index=False)
    return path


def write_energy(folder: Path, report: Mapping[str, Any]) -> Path:
    """folder/energy.json, atomically."""
    path = Path(folder) / ENERGY_FILE
    write_json(path, report)
    return path


# -- reading (the jobs and the report) ---------------------------------------------------------
def read_metrics(folder: Path) -> dict[str, Any]:
    return read_json(Path(folder) / METRICS_FILE)


def read_energy(folder: Path) -> dict[str, Any]:
    return read_json(Path(folder) / ENERGY_FILE)


def read_history(folder: Path) -> "pd.DataFrame":
    import pandas as pd

    return pd.read_csv(Path(folder) / HISTORY_FILE)
