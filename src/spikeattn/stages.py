"""The pipeline's stages as functions: what `spikeattn <stage>` and the Snakemake rules run.

Each function is one call into the module that does the work (data/, train/job.py,
energy/job.py, report/, plan.py), so this file only says which command runs what. Each stage
reads only files written upstream plus its own slice of params.yaml, and writes its outputs
atomically. MLflow receives what train and energy produce; it is never read back as an input,
so tables can be rebuilt from results/ alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import data, paths
from .config import Params
from .job_inputs import ROOT


def prepare(params: Params, dataset: str) -> Path:
    """Build an embedded dataset into data/raw/<dataset>/."""
    return data.prepare(dataset, params.dataset(dataset), ROOT)


def download(params: Params, dataset: str) -> Path:
    """Fetch a real dataset into data/raw/<dataset>/."""
    return data.download(dataset, params.dataset(dataset), ROOT)


def preprocess(
    params: Params, dataset: str, T: int, study: str | None = None, workers: int = 1
) -> Path:
    """Raw data -> compact frame tensors cached under a key of their parameters (with
    `study`'s overrides of the dataset's parameters, if any)."""
    return data.preprocess(dataset, params.dataset(dataset, study), T, ROOT, workers=workers)


def train(
    params: Params, study: str, cell_id: str, seed: int, threads: int = 1, track: bool = True
) -> dict[str, Any]:
    """Train one cell x seed; write metrics.json, history.csv and checkpoint.pt (see
    `spikeattn.train.job`: the run lock, torchrun, resuming, the MLflow run)."""
    from .train.job import train_cell

    return train_cell(params, study, cell_id, seed, threads, track)


def energy(
    params: Params, study: str, cell_id: str, seed: int, threads: int = 1, track: bool = True
) -> dict[str, Any]:
    """Count spikes and operations of a trained cell x seed on its test set; write energy.json
    (see `spikeattn.energy.job`)."""
    from .energy.job import measure_cell

    return measure_cell(params, study, cell_id, seed, threads, track)


def tables(params: Params, study: str) -> Path:
    """results/<study>/ -> reports/<study>/{summary.md, .csv, .tex, metrics.json}."""
    from .report import build_tables

    cells = [{"id": c.id, **c.coords()} for c in params.cells(study)]
    out = paths.report_dir(study)
    build_tables(
        study, cells, params.seeds(study), paths.RESULTS, out, targets=params.targets(study)
    )
    return out


def _study_inputs(params: Params, study: str):
    from .report.build import StudyInputs

    return StudyInputs(
        cells=[{"id": c.id, **c.coords()} for c in params.cells(study)],
        seeds=params.seeds(study),
        targets=params.targets(study),
        epochs=params.train_settings(study)["epochs"],
    )


def figures(params: Params, study: str) -> Path:
    """reports/<study>/summary.csv + results/ -> reports/<study>/{pareto, firing_rates,
    training_curves}.{png,svg}."""
    from .report.build import build_figures

    out = paths.report_dir(study)
    build_figures(study, _study_inputs(params, study), out / "summary.csv", paths.RESULTS, out)
    return out


def paper(params: Params, name: str) -> Path:
    """results/ of the paper's studies -> reports/<paper>/{results, ablation}.{md,tex,csv},
    headline.md and tables.html (with each study's recipe card)."""
    from .report.build import build_paper
    from .report.recipe import recipe_card

    declared = params.paper(name)
    out = paths.report_dir(name)
    build_paper(
        name,
        declared["title"],
        {s: _study_inputs(params, s) for s in declared["studies"]},
        paths.RESULTS,
        out,
        params.report,
        recipes={s: recipe_card(params, s) for s in declared["studies"]},
    )
    return out


def recipe(params: Params, study: str) -> Path:
    """params.yaml -> reports/<study>/recipe.{md,csv,html}: each setting, its value, its source."""
    from .report.recipe import build_recipe

    out = paths.report_dir(study)
    build_recipe(params, study, out)
    return out


def plan(
    params: Params,
    selection: str | None = None,
    device: str | None = None,
    gpus: int | None = None,
    probe_steps: int = 3,
    probe: bool = True,
    reprobe: bool = False,
    probe_batch: int | None = None,
    markdown: bool = False,
    per_cell: bool = False,
) -> str:
    """The selected studies' cost (jobs, steps, GPU-hours, wall time) on `device`, from probes
    cached under .spikeattn/probe/ (see `spikeattn.plan`)."""
    from .plan import make_plan, resolve_target

    studies = params.selected(selection)
    made = make_plan(
        params,
        studies,
        resolve_target(device, gpus),
        probe_steps=probe_steps,
        probe=probe,
        reprobe=reprobe,
        probe_batch=probe_batch,
    )
    return made.render(markdown=markdown, per_cell=per_cell)
