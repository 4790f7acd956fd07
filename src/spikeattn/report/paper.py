"""A paper's results table: rows are cells, columns are dataset / T, as the papers print them.

Each (dataset, T) column group shows the paper's number (params.yaml `targets:`), ours as
mean ± std over seeds with the seed count, and Δ = ours − paper, plus our energy per sample.
The long form (one row per cell) is the CSV; Markdown and LaTeX show the wide form.

Diverged runs (runs frame `status`) are left out of every mean and std and counted: ours
reads '85.40 ± 0.20 (2, 1 diverged)', or 'diverged (all 3)' when every seed diverged; the CSV
has the cell's `status`, `seeds` (completed) and `n_diverged`.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

import pandas as pd

from ..records import COMPLETED, DIVERGED
from .formatting import NO_STD, column_decimals, fmt_pm, latex_escape, seed_note
from .tables import cell_status, cell_target, diverged_caption, mean_std

LONG_COLUMNS = (
    "study",
    "cell",
    "dataset",
    "backbone",
    "attention",
    "coding",
    "T",
    "row",
    "column",
    "status",
    "seeds",
    "n_diverged",
    "acc_mean",
    "acc_std",
    "target_acc",
    "delta",
    "energy_uj_mean",
    "energy_uj_std",
    "target_energy_uj",
)


def completed_mask(runs: pd.DataFrame) -> pd.Series:
    """True for the runs that completed; a runs frame without `status` predates divergence."""
    if "status" not in runs.columns:
        return pd.Series(True, index=runs.index)
    return runs["status"].eq(COMPLETED)


def _row_axes(runs: pd.DataFrame) -> list[str]:
    """Backbone names a row only where one (dataset, T) column holds several backbones;
    coding only where it varies. Attention always does."""
    several = runs.groupby(["dataset", "T"])["backbone"].nunique().gt(1).any()
    axes = ["backbone"] if several else []
    axes.append("attention")
    if runs["coding"].nunique() > 1:
        axes.append("coding")
    return axes


def _column_label(group: pd.DataFrame, dataset: str, T: int, with_backbone: bool) -> str:
    backbone = f" · {group['backbone'].iloc[0]}" if with_backbone else ""
    return f"{dataset}{backbone} · T={T}"


def paper_long(
    runs: pd.DataFrame, targets: Mapping[str, Iterable[Mapping[str, Any]]]
) -> pd.DataFrame:
    """One row per cell (over all the paper's studies): its row and column labels, our mean ±
    std over the completed seeds, their count (seeds) and that of the diverged ones
    (n_diverged), the paper's target (NaN if none) and Δ (NaN where every seed diverged)."""
    if runs.empty:
        raise ValueError("no runs to tabulate: the paper's studies produced no result files")
    axes = _row_axes(runs)
    columns = {}
    for (dataset, T), group in runs.groupby(["dataset", "T"], sort=False):
        columns[(dataset, T)] = _column_label(group, dataset, T, "backbone" not in axes)
    rows = []
    for (study, cell), seeds in runs.groupby(["study", "cell"], sort=False):
        first = seeds.iloc[0]
        coords = {a: first[a] for a in ("dataset", "backbone", "attention", "coding", "T")}
        target = cell_target(coords, targets.get(study, ()))
        done = seeds[completed_mask(seeds)]
        n_diverged = len(seeds) - len(done)
        acc, acc_std = mean_std(done["acc"])
        uj, uj_std = mean_std(done["energy_uj"])
        paper = target.get("acc", math.nan)
        rows.append(
            {
                "study": study,
                "cell": cell,
                **coords,
                "row": " / ".join(str(first[a]) for a in axes),
                "column": columns[(first["dataset"], first["T"])],
                "status": cell_status(len(done), n_diverged),
                "seeds": len(done),
                "n_diverged": n_diverged,
                "acc_mean": acc,
                "acc_std": acc_std,
                "target_acc": paper,
                "delta": acc - paper,
                "energy_uj_mean": uj,
                "energy_uj_std": uj_std,
                "target_energy_uj": target.get("energy_mj", math.nan) * 1e3,
            }
        )
    return pd.DataFrame(rows, columns=list(LONG_COLUMNS))


def _signed(value: float) -> str:
    return "" if math.isnan(value) else f"{value:+.2f}"


def _ours(mean: float, std: float, seeds: int, diverged: int) -> str:
    """'96.12 ± 0.35 (3)', '96.12 ± 0.35 (2, 1 diverged)', or 'diverged (all 3)'."""
    if seeds == 0:
        return f"{DIVERGED} (all {diverged})"
    return f"{fmt_pm(mean, std, 2)} ({seed_note(seeds, diverged)})"


def _diverged_counts(group: pd.DataFrame) -> list[int]:
    if "n_diverged" not in group.columns:
        return [0] * len(group)
    return [0 if pd.isna(n) else int(n) for n in group["n_diverged"]]


def paper_wide(long: pd.DataFrame) -> pd.DataFrame:
    """Rows x (column, quantity) strings; quantities: Paper (%), Ours (%), Δ (pp), Energy (µJ)
    and, where the paper reports energy, Paper (µJ). Paper and Δ are left out of a column
    group with no target at all, and empty where one cell has none."""
    uj_dec = column_decimals(long["energy_uj_mean"])
    parts = []
    for column, group in long.groupby("column", sort=False):
        has_acc = group["target_acc"].notna().any()
        has_uj = group["target_energy_uj"].notna().any()
        sub = pd.DataFrame(index=pd.Index(group["row"], name=""))
        if has_acc:
            sub["Paper (%)"] = ["" if math.isnan(v) else f"{v:.2f}" for v in group["target_acc"]]
        diverged = _diverged_counts(group)
        sub["Ours (%)"] = [
            _ours(m, s, int(n), k)
            for m, s, n, k in zip(group["acc_mean"], group["acc_std"], group["seeds"], diverged)
        ]
        if has_acc:
            sub["Δ (pp)"] = [_signed(v) for v in group["delta"]]
        sub["Energy (µJ)"] = [
            DIVERGED if int(n) == 0 and k else fmt_pm(m, s, uj_dec)
            for m, s, n, k in zip(
                group["energy_uj_mean"], group["energy_uj_std"], group["seeds"], diverged
            )
        ]
        if has_uj:
            sub["Paper (µJ)"] = [
                "" if math.isnan(v) else f"{v:.4g}" for v in group["target_energy_uj"]
            ]
        sub.columns = pd.MultiIndex.from_product([[column], sub.columns])
        parts.append(sub)
    order = list(dict.fromkeys(long["row"]))
    wide = pd.concat(parts, axis=1).reindex(order)
    return wide.fillna("")  # a row absent from a column group: an empty cell, not "nan"


def diverged_of(runs: pd.DataFrame) -> list[dict[str, Any]]:
    """The diverged runs of a runs frame, for paper_caption: {study, cell, seed, epoch}."""
    if "status" not in runs.columns:
        return []
    out = []
    for _, r in runs[runs["status"].eq(DIVERGED)].iterrows():
        epoch = r.get("diverged_epoch")
        out.append(
            {
                "study": r["study"],
                "cell": r["cell"],
                "seed": int(r["seed"]),
                "epoch": None if epoch is None or pd.isna(epoch) else int(epoch),
            }
        )
    return out


def _diverged_sentence(long: pd.DataFrame, diverged: list[Mapping[str, Any]]) -> str:
    """Names the diverged runs ('' when none); a long table read back without the runs still
    explains its '(n, k diverged)' counts."""
    where = {
        (r["study"], r["cell"]): f"{r['study']} {r['row']} ({r['column']})"
        for _, r in long.iterrows()
    }
    if diverged:
        return diverged_caption(
            diverged, lambda run: where.get((run.get("study"), run["cell"]), run["cell"])
        )
    total = sum(_diverged_counts(long))
    if not total:
        return ""
    return (
        f"{total} run{'s' if total > 1 else ''} diverged (training loss NaN or infinite), "
        "left out of every mean and std: '(n, k diverged)' counts the n completed seeds "
        "behind a number and the k diverged seeds left out; a cell whose seeds all "
        "diverged reads diverged."
    )


def paper_caption(
    title: str,
    long: pd.DataFrame,
    studies: Mapping[str, Mapping[str, Any]],
    conventions: str,
    sources: Iterable[str] = (),
    diverged: Iterable[Mapping[str, Any]] = (),
) -> str:
    """What every number is, the data and settings of each study, the energy conventions;
    the diverged runs (diverged_of) when there are any."""
    parts = [
        f"{title}.",
        "Ours: final test accuracy, mean ± sample std over seeds (seed count in "
        f"parentheses; {NO_STD} where a single seed leaves the std undefined).",
        "Paper: accuracy the paper reports; Δ = ours − paper in percentage points.",
        "Energy: estimated per test sample.",
    ]
    if note := _diverged_sentence(long, list(diverged)):
        parts.append(note)
    for study, info in studies.items():
        cells = long[long["study"] == study]
        data = ", ".join(f"{d} T={t}" for d, t in dict.fromkeys(zip(cells["dataset"], cells["T"])))
        seeds = ", ".join(map(str, info["seeds"]))
        plural = "s" if info["epochs"] != 1 else ""
        parts.append(f"{study}: {data}; seeds {seeds}; {info['epochs']} epoch{plural}.")
    sources = list(dict.fromkeys(sources))
    if sources:
        parts.append("Targets from: " + "; ".join(sources) + ".")
    if conventions:
        parts.append(f"Energy conventions: {conventions.rstrip('.')}.")
    return " ".join(parts)


def render_paper(name: str, wide: pd.DataFrame, long: pd.DataFrame, caption: str) -> dict[str, str]:
    """{'results.md', 'results.tex', 'results.csv'}: wide tables with the caption, long CSV."""
    flat = wide.copy()
    flat.columns = [f"{group}: {quantity}" for group, quantity in wide.columns]
    flat = flat.reset_index().rename(columns={"": "Cell", "index": "Cell"})
    body = flat.to_markdown(
        index=False,
        disable_numparse=True,  # keep "+0.60", "96.50"
        colalign=("left",) + ("right",) * (flat.shape[1] - 1),
    )
    markdown = f"# {name}: results\n\n{body}\n\n{caption}\n"
    escaped = wide.map(latex_escape)
    escaped.index = [latex_escape(i) for i in wide.index]
    escaped.columns = pd.MultiIndex.from_tuples(
        [(latex_escape(g), latex_escape(q)) for g, q in wide.columns]
    )
    latex = escaped.style.to_latex(
        hrules=True,
        position="htbp",
        position_float="centering",
        multicol_align="c",
        column_format="l" + "r" * wide.shape[1],
        caption=latex_escape(caption),
        label=f"tab:{name}-results",
    )
    csv = long.to_csv(index=False, na_rep="NaN")
    return {"results.md": markdown, "results.tex": latex, "results.csv": csv}


def paper_sources(targets: Mapping[str, Iterable[Mapping[str, Any]]]) -> list[str]:
    return [t["source"] for ts in targets.values() for t in ts if "source" in t]
