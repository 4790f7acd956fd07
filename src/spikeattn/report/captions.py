"""Captions of the report's figures and tables, from params.yaml alone.

`snakemake --report` renders each result's caption from an RST template that reads these
strings from the rule's params; they state dataset, T, seeds, epochs and the energy
conventions, so a figure lifted out of the report still says what it shows.
"""

from __future__ import annotations

from typing import Any

_RST_SPECIAL = "\\*`_|"
# params.yaml cannot say which runs will diverge: the captions state the rule, and the note
# under each figure (figures.diverged_note) and each table's caption name the runs.
DIVERGED_RULE = (
    "Runs whose training loss became NaN or infinite (diverged) are left out of "
    "every point, mean and band and named in a note under the figure."
)


def rst_escape(text: str) -> str:
    """Backslash-escape RST inline markup, so captions render as the plain text they are."""
    return "".join(f"\\{ch}" if ch in _RST_SPECIAL else ch for ch in text)


def study_setting(params: Any, study: str) -> str:
    """'digits-dvs T=8; 8 cells; seeds 0, 1; 5 epochs' for one study."""
    cells = params.cells(study)
    data = ", ".join(f"{d} T={t}" for d, t in dict.fromkeys((c.dataset, c.T) for c in cells))
    seeds = params.seeds(study)
    epochs = params.train_settings(study)["epochs"]
    return (
        f"{data}; {len(cells)} cells; seed{'s' if len(seeds) > 1 else ''} "
        f"{', '.join(map(str, seeds))}; {epochs} epoch{'s' if epochs != 1 else ''}"
    )


def figure_captions(params: Any, study: str, energy_caption: str) -> dict[str, str]:
    setting = study_setting(params, study)
    spread = "mean ± sample std over seeds" if len(params.seeds(study)) > 1 else "a single seed"
    captions = {
        "pareto": (
            f"Study {study} ({setting}). Final test accuracy against estimated energy "
            f"per test sample, one point per cell ({spread}); the step line joins the "
            "Pareto front (no other cell is both cheaper and more accurate); hollow "
            "diamonds mark the paper's reported accuracy where there is one. "
            "A cell whose seeds all diverged has no point. "
            f"{DIVERGED_RULE} Energy conventions: {energy_caption}"
        ),
        "firing_rates": (
            f"Study {study} ({setting}). Firing rate of each spiking layer, in "
            "forward order, per attention variant (mean over seeds, measured on "
            "the test set): where an attention module suppresses spikes. "
            f"{DIVERGED_RULE}"
        ),
        "training_curves": (
            f"Study {study} ({setting}). Test accuracy and training loss per "
            "epoch, "
            + (
                "mean over seeds with the min-max band across seeds."
                if len(params.seeds(study)) > 1
                else "one seed."
            )
            + f" {DIVERGED_RULE} A diverged run's completed epochs are drawn "
            "dashed, a cross at the last one."
        ),
    }
    return {k: rst_escape(v) for k, v in captions.items()}


def paper_report_caption(params: Any, paper: str, studies: list[str], energy_caption: str) -> str:
    report = params.report
    settings = " ".join(f"{s}: {study_setting(params, s)}." for s in studies)
    text = (
        f"{params.paper(paper)['title']}: the headline (each variant's change in spikes and "
        "in accuracy against its vanilla twin, with intervals and tests; also in "
        "headline.md), the results table (ours vs the paper's numbers, "
        "rows = cells, columns = dataset and T), the ablations (each variant against its "
        f"vanilla twin; two-sided Welch t-test, alpha {report['alpha']:g}, at least "
        f"{report['min_seeds']} seeds, {report['correction']} correction, on accuracy and on "
        "spikes) and each study's "
        f"summary. Diverged runs (training loss NaN or infinite) are left out of every "
        f"mean, std and test, counted beside the numbers and named in the captions. "
        f"{settings} Energy conventions: {energy_caption}"
    )
    return rst_escape(text)
