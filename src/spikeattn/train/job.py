"""The train job of one cell x seed: frames in, metrics.json, history.csv and checkpoint.pt out.

`train_cell` is what `spikeattn train` runs. It holds the run directory's lock, re-launches
itself under torchrun when the study trains on several GPUs, resumes a killed job from its last
epoch (`train.Resume`), and starts the cell's MLflow run (a resumed job continues the killed
job's run instead), which it closes with the run's status: a run whose loss became NaN or
infinite is recorded as diverged (its files written, the MLflow run FAILED), not raised as a
crash.

Firing rates are not counted here: the energy job measures them on the test set with the
operation counts, and energy.json is their one source.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any

from .. import data, paths, records
from ..config import Cell, Params
from ..job_inputs import cell_batches, frames_path, model_spec, training_device


class RunBusyError(RuntimeError):
    """Another `spikeattn train` of the same cell x seed is running; the message names its run
    directory."""


RUN_LOCK = ".train.lock"  # in the run directory; held (flock) while a train job runs


@contextlib.contextmanager
def run_lock(out: Path):
    """Hold the run directory's lock while training, so a second start of the same cell x seed
    (by hand: Snakemake never runs one job twice) is refused instead of writing the same files
    and opening a second MLflow run. flock: a killed job's lock goes with it."""
    import filelock

    out.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(str(out / RUN_LOCK))
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        raise RunBusyError(
            f"{out}: another `spikeattn train` of this cell x seed is running (it "
            f"holds {out / RUN_LOCK}); wait for it to finish, or stop it, and start "
            "this one again"
        ) from None
    try:
        yield
    finally:
        lock.release()


def train_cell(
    params: Params, study: str, cell_id: str, seed: int, threads: int = 1, track: bool = True
) -> dict[str, Any]:
    """Train one cell x seed; write metrics.json, history.csv and checkpoint.pt.

    A study with `distributed: {nproc_per_node: G}` (G > 1) trains as G torchrun processes
    (this function re-launches the command under torchrun and waits). A job killed before the
    end resumes from its last epoch when started again (see `train.Resume`); a second start
    of the same cell x seed while one runs is refused (`run_lock`)."""
    from .distributed import launched_by_torchrun

    cell = params.cell(study, cell_id)  # an unknown cell fails before its run directory is made
    if launched_by_torchrun():  # a worker: the launcher holds the run's lock
        return _train_or_launch(params, study, cell.id, seed, threads, track)
    with run_lock(paths.run_dir(study, cell.id, seed)):
        return _train_or_launch(params, study, cell.id, seed, threads, track)


def _train_or_launch(
    params: Params, study: str, cell_id: str, seed: int, threads: int, track: bool
) -> dict[str, Any]:
    """Train here, or under torchrun when the study trains on several GPUs."""
    from .distributed import Dist, launched_by_torchrun, torchrun_argv

    setup = params.distributed(study)
    if setup["nproc_per_node"] > 1 and not launched_by_torchrun():
        argv = [
            "--params",
            params.source,
            "train",
            "--study",
            study,
            "--cell",
            cell_id,
            "--seed",
            str(seed),
            "--threads",
            str(threads),
        ] + ([] if track else ["--no-track"])
        _run_to_end(
            torchrun_argv(setup["nproc_per_node"], argv), what=f"torchrun of {cell_id} seed {seed}"
        )
        return records.read_metrics(paths.run_dir(study, cell_id, seed))
    dist = Dist.from_env(setup["backend"])
    try:
        return _train(params, study, cell_id, seed, threads, track, dist)
    finally:
        dist.close()


def _run_to_end(argv: list[str], what: str) -> None:
    """Run a child command; on Ctrl-C/SIGTERM stop it with SIGTERM (torchrun then stops its
    workers) rather than leaving it running."""
    import subprocess

    child = subprocess.Popen(argv)
    try:
        code = child.wait()
    except BaseException:
        child.terminate()
        child.wait()
        raise
    if code != 0:
        raise RuntimeError(f"{what} failed with exit code {code} (its output is above)")


def _train(
    params: Params, study: str, cell_id: str, seed: int, threads: int, track: bool, dist
) -> dict[str, Any]:
    import timm
    import torch

    import spikeattn.models  # noqa: F401  (registers the backbones with timm)

    from ..io import short_hash
    from . import Resume, fit, save_checkpoint, seed_everything

    cell = params.cell(study, cell_id)
    settings = params.train_settings(study)
    torch.set_num_threads(threads)
    device = dist.device() if dist.active else training_device()
    frames = data.load_frames(frames_path(params, cell).parent)
    size = settings["batch_size"]
    train_batches = cell_batches(params, cell, frames, "train", size, device, seed)
    test_batches = cell_batches(params, cell, frames, "test", size, device, seed)
    if dist.active:
        train_batches.shard(dist.rank, dist.world)
        test_batches.shard(dist.rank, dist.world)
    name, kwargs = model_spec(params, cell)
    seed_everything(seed)
    model = timm.create_model(name, **kwargs).to(device)
    out = paths.run_dir(study, cell.id, seed)
    out.mkdir(parents=True, exist_ok=True)
    resume = Resume(
        out / paths.RESUME_FILE,
        short_hash(
            {
                "spec": params.train_spec(cell),
                "data": frames_path(params, cell).parent.name,
                "seed": seed,
            }
        ),
    )

    run = (
        _open_train_run(params, cell, seed, name, kwargs, settings, resume)
        if track and dist.main
        else None
    )
    with run if run is not None else contextlib.nullcontext():
        result = fit(
            model,
            train_batches,
            test_batches,
            settings,
            seed,
            resume=resume,
            dist=dist,
            on_epoch=(lambda epoch, row: run.log_metrics(row, step=epoch)) if run else None,
        )
        if not dist.main:
            return {}
        status = records.status_of(result.diverged is not None)
        records.write_history(out, result.history)
        checkpoint = save_checkpoint(
            out / records.CHECKPOINT_FILE,
            model,
            name,
            kwargs,
            cell=cell.coords(),
            seed=seed,
            epochs=len(result.history),
            status=status,
        )
        final, best = result.final or {}, result.best or {}
        metrics = {
            **cell.coords(),
            "cell": cell.id,
            "seed": seed,
            "status": status,
            **({"diverged": result.diverged} if status == records.DIVERGED else {}),
            "final": {k: final.get(k) for k in records.FINAL_KEYS},
            "best": {"test_acc": best.get("test_acc"), "epoch": best.get("epoch")},
            "params": sum(p.numel() for p in model.parameters()),
            "epochs": settings["epochs"],
            "train_seconds": round(result.seconds, 2),
            **result.settings,  # the training step's settings as run (deterministic resolved)
            "peak_memory_mb": max(
                (
                    row["peak_memory_mb"]
                    for row in result.history
                    if row.get("peak_memory_mb") is not None
                ),
                default=None,
            ),
            "resumed_from_epoch": result.resumed_from,
            "device": str(device),
            "processes": dist.world,
            "cuda_visible_devices": os.environ.get(
                "CUDA_VISIBLE_DEVICES"
            ),  # the GPU slot(s) leased
            "mlflow_run_id": run.run_id if run else None,
            "checkpoint_sha256": checkpoint,  # energy.json names it too: tables match the two
        }
        records.write_metrics(out, metrics)
        if run:
            _close_train_run(run, metrics, out)
        resume.clear()
    return metrics


def _open_train_run(
    params: Params, cell: Cell, seed: int, name: str, kwargs: dict, settings: dict, resume
):
    """The cell's MLflow run: the killed job's run, continued, when resuming (its missing epochs
    are logged now, so each epoch is in MLflow exactly once), else a new one."""
    from ..tracking import RunNotFoundError, Tracker

    tracker = Tracker()
    run = None
    if resume.state is not None and resume.extra.get("mlflow_run_id"):
        try:
            run = tracker.continue_cell_run(resume.extra["mlflow_run_id"])
        except RunNotFoundError as err:
            print(f"warning: {err}; logging the resumed run as a new MLflow run", file=sys.stderr)
    if run is None:
        run = tracker.start_cell_run(
            cell.study,
            cell.id,
            seed,
            tags={**cell.coords(), "seed": seed, "cell": cell.id},
            params={"train": settings, "model": kwargs, "model_name": name},
        )
    resume.extra["mlflow_run_id"] = run.run_id
    if resume.state is not None:
        logged = run.logged_steps("test_acc")
        for row in resume.state["history"]:
            if row["epoch"] not in logged:
                run.log_metrics(row, step=row["epoch"])
    return run


def _close_train_run(run, metrics: dict[str, Any], out: Path) -> None:
    """Tag the run with its status, log its headline numbers and files; a diverged run is
    marked (metric `diverged` at its epoch) and ends FAILED. The firing rate is logged by the
    energy job, which measures it."""
    status = metrics["status"]
    run.set_tags({"spikeattn.status": status})
    if status == records.DIVERGED:
        run.log_metrics({"diverged": 1}, step=metrics["diverged"]["epoch"])
    run.log_metrics(
        {
            "final_test_acc": metrics["final"]["test_acc"],
            "best_test_acc": metrics["best"]["test_acc"],
            "params": metrics["params"],
        }
    )
    run.log_artifacts([out / f for f in paths.TRAIN_FILES])
    if status == records.DIVERGED:
        run.finish("FAILED")
