"""Summary tables of a study, built from the per-seed result files alone.

The files are read and checked by `results.load_runs` (never MLflow: the tables rebuild on any
machine, without a GPU or a tracking server); a missing file, a metrics.json missing a key the
tables need, or an energy.json of another checkpoint is refused there. Everything is read and
rendered before anything is written, and each file is written atomically, so a missing input
never leaves a partial or half-written report behind.

A run whose training loss became NaN or infinite is recorded as diverged (metrics.json and
energy.json `"status": "diverged"`, its numbers null); files without a status are completed
runs. Diverged seeds are left out of every mean, std and test and counted instead: `seeds` is
the number of completed seeds behind each mean, `n_diverged` the number left out, and a
cell's `status` is completed, some_diverged or diverged (every seed diverged). The readable
tables show the counts as "2, 1 diverged" (seed_note) and a fully diverged cell as "diverged".
Accuracies come from metrics.json; firing rates and energy from energy.json.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import pandas as pd

from ..config import GRID_AXES as AXES
from ..io import write_json, write_texts
from ..records import COMPLETED, DIVERGED, run_status
from .formatting import (
    NO_STD,
    cell_label,
    column_decimals,
    fmt_count,
    fmt_pm,
    label_axes,
    latex_escape,
    seed_note,
)
from .results import Runs, cell_dict, diverged_runs, energy_conventions, load_runs, num

SUMMARY_COLUMNS = (
    "cell",
    *AXES,
    "status",
    "seeds",
    "n_diverged",
    "acc_mean",
    "acc_std",
    "best_acc_mean",
    "best_acc_std",
    "firing_rate_mean",
    "firing_rate_std",
    "energy_uj_mean",
    "energy_uj_std",
    "sops_mean",
    "macs_mean",
    "params",
    "target_acc",
    "target_energy_mj",
)
METRICS_KEYS = (
    "acc_mean",
    "acc_std",
    "best_acc_mean",
    "firing_rate_mean",
    "energy_uj_mean",
    "params",
    "target_acc",
    "seeds",
    "n_diverged",
)
COUNT_KEYS = ("params", "seeds", "n_diverged")  # integers in metrics.json, never 3.0
# The status of a cell over its seeds (a run's status: records.RUN_STATUSES).
SOME_DIVERGED = "some_diverged"
MAX_LISTED = 10  # diverged runs named one by one in a caption; the rest are counted
LOSS_TEXT = {"nan": "NaN", "inf": "+inf", "-inf": "-inf"}  # metrics.json "diverged"/"loss"


# -- aggregation -------------------------------------------------------------------------------
def mean_std(values: Iterable[float]) -> tuple[float, float]:
    """Mean and sample std (ddof=1); std is NaN for a single value rather than a false 0, and
    both are NaN for no values (every seed diverged)."""
    arr = np.asarray(list(values), dtype=float)
    if arr.size == 0:
        return math.nan, math.nan
    std = float(arr.std(ddof=1)) if arr.size > 1 else math.nan
    return float(arr.mean()), std


def cell_status(completed: int, diverged: int) -> str:
    """completed (no seed diverged), some_diverged, or diverged (every seed did)."""
    if diverged == 0:
        return COMPLETED
    return DIVERGED if completed == 0 else SOME_DIVERGED


def _summary_row(cell: dict, seed_runs: list[tuple[dict, dict, Path]]) -> dict[str, Any]:
    done = [(m, e) for m, e, _ in seed_runs if run_status(m) == COMPLETED]
    metrics = [m for m, _ in done]
    energy = [e for _, e in done]
    acc = mean_std(100.0 * num(m["final"]["test_acc"]) for m in metrics)
    best = mean_std(100.0 * num(m["best"]["test_acc"]) for m in metrics)
    rate = mean_std(num(e.get("mean_firing_rate")) for e in energy)
    uj = mean_std(num(e.get("energy_uj")) for e in energy)
    # architecture-only, the same for every seed; a diverged run records it too
    params = next((m["params"] for m, _, _ in seed_runs if m.get("params") is not None), None)
    n_diverged = len(seed_runs) - len(done)
    return {
        "cell": cell["id"],
        **{axis: cell[axis] for axis in AXES},
        "status": cell_status(len(done), n_diverged),
        "seeds": len(done),
        "n_diverged": n_diverged,
        "acc_mean": acc[0],
        "acc_std": acc[1],
        "best_acc_mean": best[0],
        "best_acc_std": best[1],
        "firing_rate_mean": rate[0],
        "firing_rate_std": rate[1],
        "energy_uj_mean": uj[0],
        "energy_uj_std": uj[1],
        "sops_mean": mean_std(num(e.get("sops")) for e in energy)[0],
        "macs_mean": mean_std(num(e.get("macs")) for e in energy)[0],
        "params": math.nan if params is None else int(params),
    }


def cell_target(cell: Mapping[str, Any], targets: Iterable[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The first paper target whose `cell` coordinates all match this cell ({} if none)."""
    for target in targets:
        if all(cell[axis] == value for axis, value in target["cell"].items()):
            return target
    return {}


def summarise(
    cells: list[dict], runs: Runs, targets: Iterable[Mapping[str, Any]] = ()
) -> pd.DataFrame:
    """One row per cell, in grid order, with the columns of summary.csv."""
    targets = list(targets)
    rows = []
    for cell in cells:
        target = cell_target(cell, targets)
        rows.append(
            {
                **_summary_row(cell, runs[cell["id"]]),
                "target_acc": target.get("acc", math.nan),
                "target_energy_mj": target.get("energy_mj", math.nan),
            }
        )
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))


# -- human formatting --------------------------------------------------------------------------
def _counts(row: Mapping[str, Any]) -> tuple[int, int]:
    """(completed seeds, diverged seeds) of a summary-like row; tables written before runs
    could diverge have no n_diverged column."""
    diverged = row.get("n_diverged", 0)
    return int(row["seeds"]), 0 if pd.isna(diverged) else int(diverged)


def human_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The readable table shared by Markdown and LaTeX (plain Unicode; LaTeX escapes later)."""
    axes = label_axes(summary)
    rate_dec = column_decimals(summary["firing_rate_mean"])
    uj_dec = column_decimals(summary["energy_uj_mean"])
    rows = []
    for _, r in summary.iterrows():
        completed, diverged = _counts(r)

        def pm(column: str, decimals: int) -> str:
            if completed == 0:
                return DIVERGED
            return fmt_pm(r[f"{column}_mean"], r[f"{column}_std"], decimals)

        rows.append(
            {
                "Cell": cell_label(r, axes),
                "Acc. (%)": pm("acc", 2),
                "Best (%)": pm("best_acc", 2),
                "Firing rate": pm("firing_rate", rate_dec),
                "Energy (µJ)": pm("energy_uj", uj_dec),
                "Params": NO_STD if pd.isna(r["params"]) else fmt_count(int(r["params"])),
                "Seeds": seed_note(completed, diverged),
                **(
                    {"Paper (%)": "" if math.isnan(r["target_acc"]) else f"{r['target_acc']:.2f}"}
                    if summary["target_acc"].notna().any()
                    else {}
                ),
            }
        )
    return pd.DataFrame(rows)


def _diverged_run_text(run: Mapping[str, Any], label: str) -> str:
    """'<label> seed 1 (epoch 3, NaN loss)'; what metrics.json does not say is left out."""
    loss = run.get("loss")
    where = [
        f"epoch {run['epoch']}" if run.get("epoch") is not None else "",
        f"{LOSS_TEXT.get(str(loss), loss)} loss" if loss is not None else "",
    ]
    where = ", ".join(w for w in where if w)
    return f"{label} seed {run['seed']}" + (f" ({where})" if where else "")


def diverged_caption(
    runs: Iterable[Mapping[str, Any]], label: Callable[[Mapping[str, Any]], str]
) -> str:
    """The sentence a caption adds when runs diverged ('' when none did): the rule and the runs.

    `runs` are diverged_runs entries (cell, seed, epoch, loss; epoch and loss may be None),
    `label` names the cell of one entry."""
    runs = list(runs)
    if not runs:
        return ""
    named = "; ".join(_diverged_run_text(r, label(r)) for r in runs[:MAX_LISTED])
    more = f"; and {len(runs) - MAX_LISTED} more" if len(runs) > MAX_LISTED else ""
    subject = (
        f"{len(runs)} runs diverged (training loss NaN or infinite) and are"
        if len(runs) > 1
        else "1 run diverged (training loss NaN or infinite) and is"
    )
    return (
        f"{subject} left out of every mean, std and test: {named}{more}. "
        "'n, k diverged' counts the n completed seeds behind a number and the k diverged "
        "seeds left out; a cell whose seeds all diverged reads diverged."
    )


def caption(
    summary: pd.DataFrame,
    seeds: list[int],
    conventions: str,
    extra: str = "",
    targets: Iterable[Mapping[str, Any]] = (),
    diverged: Iterable[Mapping[str, Any]] = (),
) -> str:
    """The caption under both tables: what each number is, so the table stands on its own.

    `diverged` lists the diverged runs (diverged_runs), named after the accuracy sentence."""
    n = len(seeds)
    listed = ", ".join(map(str, seeds))
    spread = (
        f"mean ± sample std over {n} seeds ({listed})"
        if n > 1
        else f"a single seed ({listed}), so no std ({NO_STD})"
    )
    parts = [f"Acc.: final test accuracy, {spread}."]
    axes = label_axes(summary)
    labels = {r["cell"]: cell_label(r, axes) for _, r in summary.iterrows()}
    if note := diverged_caption(diverged, lambda run: labels.get(run["cell"], run["cell"])):
        parts.append(note)
    parts += [
        "Best: best test accuracy over the epochs.",
        "Firing rate: mean firing rate of the spiking neurons.",
        "Energy: estimated energy per sample.",
    ]
    constant = [
        f"{a} {summary[a].iloc[0]}" for a in ("dataset", "backbone") if summary[a].nunique() == 1
    ]
    if constant:
        parts.append("All cells: " + ", ".join(constant) + ".")
    sources = list(dict.fromkeys(t["source"] for t in targets))
    if sources and summary["target_acc"].notna().any():
        parts.append("Paper: accuracy reported by " + "; ".join(sources) + ".")
    if conventions:
        parts.append(f"Energy conventions: {conventions.rstrip('.')}.")
    if extra.strip():
        parts.append(extra.strip())
    return " ".join(parts)


def render_markdown(study: str, table: pd.DataFrame, text: str) -> str:
    body = table.to_markdown(index=False, colalign=("left",) + ("right",) * (table.shape[1] - 1))
    return f"# {study}\n\n{body}\n\n{text}\n"


def render_latex(study: str, table: pd.DataFrame, text: str) -> str:
    """A booktabs `table` float; cells, headers and caption are escaped here, not by pandas."""
    escaped = table.map(latex_escape)
    escaped.columns = [latex_escape(c) for c in table.columns]
    styler = escaped.style.hide(axis="index")
    return styler.to_latex(
        hrules=True,
        position="htbp",
        position_float="centering",
        column_format="l" + "r" * (table.shape[1] - 1),
        caption=latex_escape(text),
        label=f"tab:{study}",
    )


def metrics_json(summary: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """The `dvc metrics show` view: a few headline numbers per cell, NaN as null; `seeds`
    counts the completed seeds behind the means and `n_diverged` the diverged ones."""

    def clean(key: str, value: Any) -> Any:
        if isinstance(value, (int, np.integer)):
            return int(value)
        value = float(value)
        if not math.isfinite(value):
            return None
        return int(value) if key in COUNT_KEYS else value

    return {
        row["cell"]: {k: clean(k, row[k]) for k in METRICS_KEYS} for _, row in summary.iterrows()
    }


# -- entry point -------------------------------------------------------------------------------
def build_tables(
    study: str,
    cells: list[dict],
    seeds: list[int],
    results_root: Path,
    out_dir: Path,
    caption_extra: str = "",
    targets: Iterable[Mapping[str, Any]] = (),
) -> pd.DataFrame:
    """Build `out_dir`/{summary.csv,summary.md,summary.tex,metrics.json} for one study.

    `cells` is the study's current grid (dicts with id and the grid axes, or `Cell`s), in grid
    order; result directories of cells not in it are ignored. Files are read from
    `results_root/<study>/<cell>/seed<k>/`. `targets` are the paper's numbers (params.yaml
    `targets:` entries), shown beside the cells they match. Returns the summary.csv table.
    """
    targets = list(targets)
    cells = [cell_dict(c) for c in cells]
    seeds = [int(s) for s in seeds]
    if not cells or not seeds:
        raise ValueError(f"study {study!r}: need at least one cell and one seed to tabulate")
    runs = load_runs(study, cells, seeds, results_root)
    summary = summarise(cells, runs, targets)
    text = caption(
        summary, seeds, energy_conventions(runs), caption_extra, targets, diverged_runs(cells, runs)
    )
    table = human_table(summary)
    rendered = {
        "summary.md": render_markdown(study, table, text),
        "summary.tex": render_latex(study, table, text),
        "summary.csv": summary.to_csv(index=False, na_rep="NaN"),
    }
    out_dir = Path(out_dir)
    write_texts(out_dir, rendered)  # everything was rendered above: nothing half-written
    write_json(out_dir / "metrics.json", metrics_json(summary))
    return summary
