"""Where each stage writes, relative to the repository root. Snakemake rules use these too."""

from __future__ import annotations

from pathlib import Path

RESULTS = Path("results")
REPORTS = Path("reports")
FROZEN_PARAMS = Path(".spikeattn") / "params"  # the merged settings each Snakemake run planned
# Validation records (config.Params): params that passed the full validation, by digest of
# params, code and library versions; a cache, so deleting the folder is always safe.
VALIDATED = Path(".spikeattn") / "validated"
WORKER_LOG = Path(".spikeattn") / "worker.log"  # the last Snakemake run's job server (worker)
PROBES = Path(".spikeattn") / "probe"  # `spikeattn plan`'s measured step times, one JSON per device

TRAIN_FILES = ("metrics.json", "history.csv", "checkpoint.pt")
ENERGY_FILE = "energy.json"
RESUME_FILE = "resume.pt"  # per-epoch training state; not a rule output, so Snakemake keeps it
REPORT_FILES = ("summary.md", "summary.csv", "summary.tex", "metrics.json")
FIGURE_NAMES = ("pareto", "firing_rates", "training_curves")
FIGURE_FORMATS = ("png", "svg")
PAPER_FILES = (
    "results.md",
    "results.tex",
    "results.csv",
    "ablation.md",
    "ablation.tex",
    "ablation.csv",
    "headline.md",
    "tables.html",
)
RECIPE_FILES = ("recipe.md", "recipe.csv", "recipe.html")  # per study, from params.yaml alone


def run_dir(study: str, cell: str, seed: int | str, results: Path = RESULTS) -> Path:
    """results/<study>/<cell>/seed<k>: one trained model and its measurements."""
    return Path(results) / study / cell / f"seed{seed}"


def report_dir(study: str) -> Path:
    return REPORTS / study
