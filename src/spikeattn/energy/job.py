"""The energy job of one trained cell x seed: its checkpoint and test set in, energy.json out.

`measure_cell` is what `spikeattn energy` runs. It counts spikes and operations of the
checkpoint metrics.json names (and names it again in energy.json, so tables can refuse an
energy.json of another checkpoint), prices them with the study's energy conventions, and adds
the totals and the mean firing rate to the cell's MLflow run. energy.json is the one source of
firing rates. A diverged run gets a placeholder instead: its weights say nothing about the cell.
"""

from __future__ import annotations

import sys
from typing import Any

from .. import data, paths, records
from ..config import Params
from ..job_inputs import cell_batches, frames_path, training_device
from .conventions import EnergyConventions


def measure_cell(
    params: Params, study: str, cell_id: str, seed: int, threads: int = 1, track: bool = True
) -> dict[str, Any]:
    """Count spikes and operations of a trained cell x seed on its test set; write energy.json."""
    import torch

    from ..train import load_checkpoint
    from .model import estimate

    cell = params.cell(study, cell_id)
    torch.set_num_threads(threads)
    out = paths.run_dir(study, cell.id, seed)
    conventions = EnergyConventions.from_params(params.energy_settings(study))  # its own, if any
    trained = records.read_metrics(out)
    checkpoint = trained.get("checkpoint_sha256")
    if trained.get("status") == records.DIVERGED:
        report = diverged_placeholder(study, cell.id, seed, checkpoint, conventions)
        records.write_energy(out, report)
        return report
    device = training_device()
    if checkpoint is None:
        print(
            f"warning: {out / records.METRICS_FILE} records no checkpoint digest (an older "
            f"train stage), so {out / records.CHECKPOINT_FILE} is measured unverified",
            file=sys.stderr,
        )
    model, _ = load_checkpoint(out / records.CHECKPOINT_FILE, checkpoint)
    frames = data.load_frames(frames_path(params, cell).parent)
    size = params.train_settings(study)["batch_size"]
    test = cell_batches(params, cell, frames, "test", size, device, clips=1)
    estimated = estimate(model, (batch.x for batch in test), conventions, device=device, T=cell.T)
    # The checkpoint measured (checked against metrics.json's): tables refuse an energy.json
    # whose checkpoint is not the one metrics.json was trained into.
    report = {
        "study": study,
        "cell": cell.id,
        "seed": seed,
        "status": records.COMPLETED,
        "checkpoint_sha256": checkpoint,
        **estimated.to_dict(),
    }
    records.write_energy(out, report)
    run_id = trained.get("mlflow_run_id")
    if track and run_id is not None:
        _log_to_run(run_id, report, out)
    return report


def diverged_placeholder(
    study: str, cell_id: str, seed: int, checkpoint: str | None, conventions: EnergyConventions
) -> dict[str, Any]:
    """A diverged run's energy.json: status diverged, every number null, no layers, no rates,
    and the checkpoint it would have measured (so tables still match it to metrics.json)."""
    return {
        "study": study,
        "cell": cell_id,
        "seed": seed,
        "status": records.DIVERGED,
        "checkpoint_sha256": checkpoint,
        **dict.fromkeys(records.ENERGY_NUMBERS),
        "firing_rates": {},
        "layers": [],
        "conventions": conventions.caption(),
        "convention": conventions.as_dict(),
    }


def _log_to_run(run_id: str, report: dict[str, Any], out) -> None:
    """Add the energy totals, the mean firing rate and energy.json to the train job's
    (finished) MLflow run."""
    from ..tracking import Tracker

    with Tracker().add_to_cell_run(run_id) as run:
        run.log_metrics({k: report[k] for k in (*records.ENERGY_TOTALS, "mean_firing_rate")})
        run.log_artifacts([out / paths.ENERGY_FILE])
