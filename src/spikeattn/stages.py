"""The pipeline's stages as functions: what `spikeattn <stage>` and the Snakemake rules run.

Each stage reads only files written upstream plus its own slice of params.yaml, and writes
its outputs atomically. MLflow receives what train and energy produce; it is never read
back as an input, so tables can be rebuilt from results/ alone.
"""
from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any

from . import data, paths
from .config import Cell, Params
from .io import read_json, write_json

ROOT = Path(".")


def prepare(params: Params, dataset: str) -> Path:
    """Build an embedded dataset into data/raw/<dataset>/."""
    return data.prepare(dataset, params.dataset(dataset), ROOT)


def download(params: Params, dataset: str) -> Path:
    """Fetch a real dataset into data/raw/<dataset>/."""
    return data.download(dataset, params.dataset(dataset), ROOT)


def preprocess(params: Params, dataset: str, T: int, study: str | None = None,
               workers: int = 1) -> Path:
    """Raw data -> compact frame tensors cached under a key of their parameters (with
    `study`'s overrides of the dataset's parameters, if any)."""
    return data.preprocess(dataset, params.dataset(dataset, study), T, ROOT, workers=workers)


def frames_path(params: Params, cell: Cell) -> Path:
    """The cached frames a cell trains and is measured on (its meta.json, written with them)."""
    return data.frames_dir(cell.dataset, params.cell_data(cell), cell.T, ROOT) / "meta.json"


def training_device() -> "torch.device":
    """The GPU when there is one (frames then live there), else the CPU."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def model_spec(params: Params, cell: Cell) -> tuple[str, dict[str, Any]]:
    """timm model name and constructor arguments for a cell (the checkpoint records both)."""
    info = data.DATASETS[cell.dataset]
    height, width = info.input_size(params.cell_data(cell))
    kwargs = {"attention": cell.attention, "coding": cell.coding, "T": cell.T,
              "num_classes": info.num_classes, "in_chans": info.in_channels,
              "img_size": height if height == width else (height, width),
              **params.model_kwargs(cell.study)}
    return cell.backbone, kwargs


def _tracked(track: bool):
    from .tracking import Tracker

    return Tracker() if track else None


def _cell_batches(params: Params, cell: Cell, frames: "data.Frames", part: str, batch_size: int,
                  device, seed: int = 0, clips: int | None = None):
    from .data.loader import batches

    return batches(frames, params.cell_data(cell), part, batch_size, cell.T, device, seed, clips)


def _inputs(loader):
    return (batch.x for batch in loader)


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
        raise RunBusyError(f"{out}: another `spikeattn train` of this cell x seed is running (it "
                           f"holds {out / RUN_LOCK}); wait for it to finish, or stop it, and start "
                           "this one again") from None
    try:
        yield
    finally:
        lock.release()


def train(params: Params, study: str, cell_id: str, seed: int, threads: int = 1,
          track: bool = True) -> dict[str, Any]:
    """Train one cell x seed; write metrics.json, history.csv and checkpoint.pt.

    A study with `distributed: {nproc_per_node: G}` (G > 1) trains as G torchrun processes
    (this function re-launches the command under torchrun and waits). A job killed before the
    end resumes from its last epoch when started again (see `train.Resume`); a second start
    of the same cell x seed while one runs is refused (`run_lock`)."""
    from .train.distributed import launched_by_torchrun

    cell = params.cell(study, cell_id)  # an unknown cell fails before its run directory is made
    if launched_by_torchrun():  # a worker: the launcher holds the run's lock
        return _train_or_launch(params, study, cell.id, seed, threads, track)
    with run_lock(paths.run_dir(study, cell.id, seed)):
        return _train_or_launch(params, study, cell.id, seed, threads, track)


def _train_or_launch(params: Params, study: str, cell_id: str, seed: int, threads: int,
                     track: bool) -> dict[str, Any]:
    """Train here, or under torchrun when the study trains on several GPUs."""
    from .train.distributed import Dist, launched_by_torchrun, torchrun_argv

    setup = params.distributed(study)
    if setup["nproc_per_node"] > 1 and not launched_by_torchrun():
        argv = ["--params", params.source, "train", "--study", study, "--cell", cell_id,
                "--seed", str(seed), "--threads", str(threads)] + ([] if track else ["--no-track"])
        _run_to_end(torchrun_argv(setup["nproc_per_node"], argv), what=f"torchrun of {cell_id} seed {seed}")
        return read_json(paths.run_dir(study, cell_id, seed) / "metrics.json")
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


def _train(params: Params, study: str, cell_id: str, seed: int, threads: int, track: bool,
           dist) -> dict[str, Any]:
    import pandas as pd
    import timm
    import torch

    from .energy import measure
    from .io import atomic_path, short_hash
    from .train import Resume, fit, save_checkpoint, seed_everything

    cell = params.cell(study, cell_id)
    settings = params.train_settings(study)
    torch.set_num_threads(threads)
    device = dist.device() if dist.active else training_device()
    frames = data.load_frames(frames_path(params, cell).parent)
    size = settings["batch_size"]
    train_batches = _cell_batches(params, cell, frames, "train", size, device, seed)
    test_batches = _cell_batches(params, cell, frames, "test", size, device, seed)
    if dist.active:
        train_batches.shard(dist.rank, dist.world)
        test_batches.shard(dist.rank, dist.world)
    name, kwargs = model_spec(params, cell)
    seed_everything(seed)
    model = timm.create_model(name, **kwargs).to(device)
    out = paths.run_dir(study, cell.id, seed)
    out.mkdir(parents=True, exist_ok=True)
    resume = Resume(out / paths.RESUME_FILE, short_hash(
        {"spec": params.train_spec(cell), "data": frames_path(params, cell).parent.name, "seed": seed}))

    run = _open_train_run(params, cell, seed, name, kwargs, settings, resume) if track and dist.main else None
    with run if run is not None else contextlib.nullcontext():
        result = fit(model, train_batches, test_batches, settings, seed, resume=resume, dist=dist,
                     on_epoch=(lambda epoch, row: run.log_metrics(row, step=epoch)) if run else None)
        if not dist.main:
            return {}
        diverged = result.diverged is not None
        counts = (measure(model, _inputs(_cell_batches(params, cell, frames, "test", size, device, clips=1)),
                          device=device) if not diverged else {"firing_rates": {}, "mean_firing_rate": None})
        with atomic_path(out / "history.csv") as tmp:
            pd.DataFrame(result.history, columns=HISTORY_COLUMNS).to_csv(tmp, index=False)
        checkpoint = save_checkpoint(out / "checkpoint.pt", model, name, kwargs, cell=cell.coords(),
                                     seed=seed, epochs=len(result.history),
                                     status="diverged" if diverged else "completed")
        final, best = result.final or {}, result.best or {}
        metrics = {
            **cell.coords(), "cell": cell.id, "seed": seed,
            "status": "diverged" if diverged else "completed",
            **({"diverged": result.diverged} if diverged else {}),
            "final": {k: final.get(k) for k in ("test_acc", "test_loss", "train_acc", "train_loss")},
            "best": {"test_acc": best.get("test_acc"), "epoch": best.get("epoch")},
            "firing_rates": counts["firing_rates"], "mean_firing_rate": counts["mean_firing_rate"],
            "params": sum(p.numel() for p in model.parameters()),
            "epochs": settings["epochs"], "train_seconds": round(result.seconds, 2),
            **result.settings,  # the training step's settings as run (deterministic resolved)
            "peak_memory_mb": max((row["peak_memory_mb"] for row in result.history
                                   if row.get("peak_memory_mb") is not None), default=None),
            "resumed_from_epoch": result.resumed_from,
            "device": str(device), "processes": dist.world,
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),  # the GPU slot(s) leased
            "mlflow_run_id": run.run_id if run else None,
            "checkpoint_sha256": checkpoint,  # energy.json names it too: tables match the two
        }
        write_json(out / "metrics.json", metrics)
        if run:
            _close_train_run(run, metrics, out)
        resume.clear()
    return metrics


# peak_memory_mb: the epoch's peak training memory on CUDA, MiB (empty on CPU: not measured)
HISTORY_COLUMNS = ["epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "peak_memory_mb"]


def _open_train_run(params: Params, cell: Cell, seed: int, name: str, kwargs: dict, settings: dict,
                    resume):
    """The cell's MLflow run: the killed job's run when resuming (its missing epochs are logged
    now, so each epoch is in MLflow exactly once), else a new one."""
    from .tracking import RunNotFoundError, Tracker

    tracker = Tracker()
    run = None
    if resume.state is not None and resume.extra.get("mlflow_run_id"):
        try:
            run = tracker.reopen_cell_run(resume.extra["mlflow_run_id"])
        except RunNotFoundError as err:
            print(f"warning: {err}; logging the resumed run as a new MLflow run", file=sys.stderr)
    if run is None:
        run = tracker.start_cell_run(cell.study, cell.id, seed, tags={**cell.coords(), "seed": seed, "cell": cell.id},
                                     params={"train": settings, "model": kwargs, "model_name": name})
    resume.extra["mlflow_run_id"] = run.run_id
    if resume.state is not None:
        logged = run.logged_steps("test_acc")
        for row in resume.state["history"]:
            if row["epoch"] not in logged:
                run.log_metrics(row, step=row["epoch"])
    return run


def _close_train_run(run, metrics: dict[str, Any], out: Path) -> None:
    status = metrics["status"]
    run.set_tags({"spikeattn.status": status})
    if status == "diverged":
        run.log_metrics({"diverged": 1}, step=metrics["diverged"]["epoch"])
    run.log_metrics({"final_test_acc": metrics["final"]["test_acc"],
                     "best_test_acc": metrics["best"]["test_acc"],
                     "mean_firing_rate": metrics["mean_firing_rate"], "params": metrics["params"]})
    run.log_artifacts([out / f for f in paths.TRAIN_FILES])
    if status == "diverged":
        run.finish("FAILED")


def energy(params: Params, study: str, cell_id: str, seed: int, threads: int = 1,
           track: bool = True) -> dict[str, Any]:
    """Count spikes and operations of a trained cell x seed on its test set; write energy.json."""
    import torch

    from .energy import EnergyConventions, estimate
    from .train import load_checkpoint

    cell = params.cell(study, cell_id)
    torch.set_num_threads(threads)
    out = paths.run_dir(study, cell.id, seed)
    conventions = EnergyConventions.from_params(params.energy_settings(study))  # its own, if any
    trained = read_json(out / "metrics.json")
    checkpoint = trained.get("checkpoint_sha256")
    if trained.get("status") == "diverged":  # its weights say nothing about the cell: no count
        report = {"study": study, "cell": cell.id, "seed": seed, "status": "diverged",
                  "checkpoint_sha256": checkpoint,
                  **dict.fromkeys(ENERGY_TOTALS), "samples": None, "mean_firing_rate": None,
                  "firing_rates": {}, "layers": [], "conventions": conventions.caption(),
                  "convention": conventions.as_dict()}
        write_json(out / paths.ENERGY_FILE, report)
        return report
    device = training_device()
    if checkpoint is None:
        print(f"warning: {out / 'metrics.json'} records no checkpoint digest (an older train "
              f"stage), so {out / 'checkpoint.pt'} is measured unverified", file=sys.stderr)
    model, _ = load_checkpoint(out / "checkpoint.pt", checkpoint)
    frames = data.load_frames(frames_path(params, cell).parent)
    size = params.train_settings(study)["batch_size"]
    estimated = estimate(model, _inputs(_cell_batches(params, cell, frames, "test", size, device, clips=1)),
                         conventions, device=device, T=cell.T)
    # The checkpoint measured (checked against metrics.json's): tables refuse an energy.json
    # whose checkpoint is not the one metrics.json was trained into.
    report = {"study": study, "cell": cell.id, "seed": seed, "status": "completed",
              "checkpoint_sha256": checkpoint, **estimated.to_dict()}
    write_json(out / paths.ENERGY_FILE, report)
    run_id = trained.get("mlflow_run_id")
    tracker = _tracked(track and run_id is not None)
    if tracker:
        with tracker.resume_cell_run(run_id) as run:
            run.log_metrics({k: report[k] for k in ENERGY_TOTALS})
            run.log_artifacts([out / paths.ENERGY_FILE])
    return report


ENERGY_TOTALS = ("energy_uj", "energy_mac_uj", "energy_ac_uj", "macs", "sops", "spikes")


def tables(params: Params, study: str) -> Path:
    """results/<study>/ -> reports/<study>/{summary.md, .csv, .tex, metrics.json}."""
    from .report import build_tables

    cells = [{"id": c.id, **c.coords()} for c in params.cells(study)]
    out = paths.report_dir(study)
    build_tables(study, cells, params.seeds(study), paths.RESULTS, out, targets=params.targets(study))
    return out


def _study_inputs(params: Params, study: str):
    from .report.build import StudyInputs

    return StudyInputs(cells=[{"id": c.id, **c.coords()} for c in params.cells(study)],
                       seeds=params.seeds(study), targets=params.targets(study),
                       epochs=params.train_settings(study)["epochs"])


def figures(params: Params, study: str) -> Path:
    """reports/<study>/summary.csv + results/ -> reports/<study>/{pareto, firing_rates,
    training_curves}.{png,svg}."""
    from .report.build import build_figures

    out = paths.report_dir(study)
    build_figures(study, _study_inputs(params, study), out / "summary.csv", paths.RESULTS, out)
    return out


def paper(params: Params, name: str) -> Path:
    """results/ of the paper's studies -> reports/<paper>/{results, ablation}.{md,tex,csv}
    and tables.html (with each study's recipe card)."""
    from .report.build import build_paper
    from .report.recipe import recipe_card

    declared = params.paper(name)
    out = paths.report_dir(name)
    build_paper(name, declared["title"], {s: _study_inputs(params, s) for s in declared["studies"]},
                paths.RESULTS, out, params.report,
                recipes={s: recipe_card(params, s) for s in declared["studies"]})
    return out


def recipe(params: Params, study: str) -> Path:
    """params.yaml -> reports/<study>/recipe.{md,csv,html}: each setting, its value, its source."""
    from .report.recipe import build_recipe

    out = paths.report_dir(study)
    build_recipe(params, study, out)
    return out


def plan(params: Params, selection: str | None = None, device: str | None = None,
         gpus: int | None = None, probe_steps: int = 3, probe: bool = True, reprobe: bool = False,
         probe_batch: int | None = None, markdown: bool = False, per_cell: bool = False) -> str:
    """The selected studies' cost (jobs, steps, GPU-hours, wall time) on `device`, from probes
    cached under .spikeattn/probe/ (see `spikeattn.plan`)."""
    from .plan import make_plan, resolve_target

    studies = params.selected(selection)
    made = make_plan(params, studies, resolve_target(device, gpus), probe_steps=probe_steps,
                     probe=probe, reprobe=reprobe, probe_batch=probe_batch)
    return made.render(markdown=markdown, per_cell=per_cell)
