"""Entry points of the report stages: a study's figures, a paper's tables and its HTML page.

Every output is rendered in memory first and then written atomically, so a failure (a
missing result file, a bad value) leaves the previous report untouched, never half of one.
Diverged runs are reported as such (see tables.py), never as a failure of the stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from ..io import write_texts
from ..paths import FIGURE_NAMES
from . import figures as fig
from .ablation import ablation_caption, ablation_table, render_ablation
from .headline import headline_lines, headline_note, render_headline
from .html import tables_page
from .paper import diverged_of, paper_caption, paper_long, paper_sources, paper_wide, render_paper
from .recipe import recipe_caption
from .results import (
    cell_dict,
    diverged_runs,
    energy_conventions,
    frame_of_runs,
    histories,
    layer_rates,
    load_runs,
)
from .tables import caption as study_caption
from .tables import human_table, summarise

FIGURES = FIGURE_NAMES


@dataclass(frozen=True)
class StudyInputs:
    """What a report needs to know about one study besides its result files."""

    cells: list[Any]
    seeds: list[int]
    targets: list[dict[str, Any]]
    epochs: int


def build_figures(
    study: str, inputs: StudyInputs, summary_csv: Path, results_root: Path, out_dir: Path
) -> list[Path]:
    """Accuracy vs energy (with the Pareto front), per-layer firing rates per variant and
    training curves of one study, as PNG and SVG in `out_dir`. Diverged runs are left out
    of the points and means and named in a note under each figure."""
    summary = pd.read_csv(summary_csv)
    note = fig.diverged_note(summary)
    made = [
        fig.pareto_figure(summary, f"{study}: accuracy vs energy"),
        fig.firing_rate_figure(
            layer_rates(study, inputs.cells, inputs.seeds, results_root),
            f"{study}: firing rate per layer",
            note,
        ),
        fig.training_curves_figure(
            histories(study, inputs.cells, inputs.seeds, results_root),
            f"{study}: training curves",
            note,
        ),
    ]
    written = []
    for name, figure in zip(FIGURES, made):
        written += fig.save_figure(figure, Path(out_dir) / name)
    return written


def build_paper(
    name: str,
    title: str,
    studies: Mapping[str, StudyInputs],
    results_root: Path,
    out_dir: Path,
    report: Mapping[str, Any],
    recipes: Mapping[str, pd.DataFrame] | None = None,
) -> dict[str, pd.DataFrame]:
    """reports/<paper>/: the paper-shaped results table, the ablation table (Markdown, LaTeX,
    CSV), the headline read from that table (headline.md) and tables.html, which opens with
    the headline and also holds each study's summary table and its recipe card (`recipes`:
    study -> report.recipe.recipe_card). Returns the frames."""
    results_root = Path(results_root)
    loaded = {s: load_runs(s, i.cells, i.seeds, results_root) for s, i in studies.items()}
    runs = pd.concat(
        [frame_of_runs(s, [cell_dict(c) for c in i.cells], loaded[s]) for s, i in studies.items()],
        ignore_index=True,
    )
    conventions = energy_conventions(
        {f"{s}/{cell}": seeds for s, by_cell in loaded.items() for cell, seeds in by_cell.items()}
    )
    targets = {s: i.targets for s, i in studies.items()}
    long = paper_long(runs, targets)
    wide = paper_wide(long)
    text = paper_caption(
        title,
        long,
        {s: {"seeds": i.seeds, "epochs": i.epochs} for s, i in studies.items()},
        conventions,
        paper_sources(targets),
        diverged_of(runs),
    )
    alpha, min_seeds, correction = report["alpha"], report["min_seeds"], report["correction"]
    ablation = ablation_table(runs, alpha, min_seeds, correction)
    ab_text = ablation_caption(ablation, alpha, min_seeds, correction)
    summaries = {}
    for study, inputs in studies.items():
        cells = [cell_dict(c) for c in inputs.cells]
        summary = summarise(cells, loaded[study], inputs.targets)
        summaries[study] = (
            human_table(summary),
            study_caption(
                summary,
                inputs.seeds,
                conventions,
                "",
                inputs.targets,
                diverged_runs(cells, loaded[study]),
            ),
        )
    texts = {
        **render_paper(name, wide, long, text),
        **render_ablation(name, ablation, ab_text),
        **render_headline(name, ablation, alpha, min_seeds, correction),
        "tables.html": tables_page(
            title,
            wide,
            text,
            ablation,
            ab_text,
            summaries,
            {s: (card, recipe_caption(s, card)) for s, card in (recipes or {}).items()},
            (
                headline_lines(ablation, alpha, min_seeds),
                headline_note(alpha, min_seeds, correction),
            ),
        ),
    }
    write_texts(out_dir, texts)
    return {"runs": runs, "results": long, "ablation": ablation}
