"""The pipeline's stages as functions: what `spikeattn <stage>` and the Snakemake rules run.

Each stage reads only files written upstream plus its own slice of params.yaml, and writes
its outputs atomically. MLflow receives what train and energy produce; it is never read
back as an input, so tables can be rebuilt from results/ alone.
"""
from __future__ import annotations

import contextlib
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


def train(params: Params, study: str, cell_id: str, seed: int, threads: int = 1,
          track: bool = True) -> dict[str, Any]:
    """Train one cell x seed; write metrics.json, history.csv and checkpoint.pt."""
    import pandas as pd
    import timm
    import torch

    from .energy import measure
    from .io import atomic_path
    from .train import fit, save_checkpoint, seed_everything

    cell = params.cell(study, cell_id)
    settings = params.train_settings(study)
    torch.set_num_threads(threads)
    device = training_device()
    frames = data.load_frames(frames_path(params, cell).parent)
    size = settings["batch_size"]
    train_batches = _cell_batches(params, cell, frames, "train", size, device, seed)
    test_batches = _cell_batches(params, cell, frames, "test", size, device, seed)
    name, kwargs = model_spec(params, cell)
    seed_everything(seed)
    model = timm.create_model(name, **kwargs).to(device)
    out = paths.run_dir(study, cell.id, seed)
    out.mkdir(parents=True, exist_ok=True)

    tracker = _tracked(track)
    run = (tracker.start_cell_run(study, cell.id, seed, tags={**cell.coords(), "seed": seed, "cell": cell.id},
                                  params={"train": settings, "model": kwargs, "model_name": name})
           if tracker else None)
    with run if run is not None else contextlib.nullcontext():
        result = fit(model, train_batches, test_batches, settings, seed,
                     on_epoch=(lambda epoch, row: run.log_metrics(row, step=epoch)) if run else None)
        counts = measure(model, _inputs(_cell_batches(params, cell, frames, "test", size, device, clips=1)),
                         device=device)
        with atomic_path(out / "history.csv") as tmp:
            pd.DataFrame(result.history).to_csv(tmp, index=False)
        save_checkpoint(out / "checkpoint.pt", model, name, kwargs, cell=cell.coords(), seed=seed,
                        epochs=settings["epochs"])
        metrics = {
            **cell.coords(), "cell": cell.id, "seed": seed,
            "final": {k: result.final[k] for k in ("test_acc", "test_loss", "train_acc", "train_loss")},
            "best": {"test_acc": result.best["test_acc"], "epoch": result.best["epoch"]},
            "firing_rates": counts["firing_rates"], "mean_firing_rate": counts["mean_firing_rate"],
            "params": sum(p.numel() for p in model.parameters()),
            "epochs": settings["epochs"], "train_seconds": round(result.seconds, 2),
            "device": str(device),
            "mlflow_run_id": run.run_id if run else None,
        }
        write_json(out / "metrics.json", metrics)
        if run:
            run.log_metrics({"final_test_acc": metrics["final"]["test_acc"],
                             "best_test_acc": metrics["best"]["test_acc"],
                             "mean_firing_rate": metrics["mean_firing_rate"], "params": metrics["params"]})
            run.log_artifacts([out / f for f in paths.TRAIN_FILES])
    return metrics


def energy(params: Params, study: str, cell_id: str, seed: int, threads: int = 1,
           track: bool = True) -> dict[str, Any]:
    """Count spikes and operations of a trained cell x seed on its test set; write energy.json."""
    import torch

    from .energy import EnergyConventions, estimate
    from .train import load_checkpoint

    cell = params.cell(study, cell_id)
    torch.set_num_threads(threads)
    out = paths.run_dir(study, cell.id, seed)
    device = training_device()
    model, _ = load_checkpoint(out / "checkpoint.pt")
    frames = data.load_frames(frames_path(params, cell).parent)
    size = params.train_settings(study)["batch_size"]
    estimated = estimate(model, _inputs(_cell_batches(params, cell, frames, "test", size, device, clips=1)),
                         EnergyConventions.from_params(params.energy), device=device, T=cell.T)
    report = {"study": study, "cell": cell.id, "seed": seed, **estimated.to_dict()}
    write_json(out / paths.ENERGY_FILE, report)
    run_id = read_json(out / "metrics.json").get("mlflow_run_id")
    tracker = _tracked(track and run_id is not None)
    if tracker:
        with tracker.resume_cell_run(run_id) as run:
            run.log_metrics({k: report[k] for k in ("energy_uj", "energy_mac_uj", "energy_ac_uj", "macs", "sops", "spikes")})
            run.log_artifacts([out / paths.ENERGY_FILE])
    return report


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
    and tables.html."""
    from .report.build import build_paper

    declared = params.paper(name)
    out = paths.report_dir(name)
    build_paper(name, declared["title"], {s: _study_inputs(params, s) for s in declared["studies"]},
                paths.RESULTS, out, params.report)
    return out
