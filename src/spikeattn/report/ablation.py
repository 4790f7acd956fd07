"""Ablations: each attention module or coding against its vanilla twin, with significance.

The papers claim every module beats the plain SNN it was added to (MA-SNN: -84.9% spikes,
+5.9% accuracy, 3.4x energy efficiency on DVS128 Gesture). This table makes the same
comparison cell by cell, from the per-seed runs frame, and says whether each accuracy gain
and each spike reduction survives a two-sided Welch t-test over seeds, so seed noise is not
reported as a gain.

Two claims, two families: the accuracy p-values and the spike p-values are each
Holm-adjusted within a study (m = the study's tested variants), separately, because the
papers make the two claims separately and a reader checks each on its own. The intervals
(accuracy: Welch, on the difference in pp; spikes: Fieller, on the ratio of means, shown as
a percent reduction) are per comparison at level 1 - alpha, not adjusted, as usual.

The test is unpaired even when both cells ran the same seed values: once the architectures
differ, seed k initialises different parameter tensors and draws a different stream of
random numbers, so "seed k of the variant" and "seed k of the twin" are not a matched pair.
Seeds are still matched by value where possible, so both means cover the same seed list.

Diverged runs (runs frame `status` 'diverged'; a frame without `status` has none) are left
out: each side is compared over its completed seeds only, the diverged ones are counted
(n_diverged, twin_n_diverged), and a side left with fewer than `min_seeds` completed seeds
is not tested, its p reading n/a with the reason ('n/a (2 seeds < 3, 1 diverged)',
'n/a (twin: all 3 diverged)').
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import pandas as pd

from ..records import COMPLETED, RUN_STATUSES
from .formatting import cell_label, label_axes, latex_escape, seed_note
from .stats import fieller_ratio, holm, welch

VANILLA = {"attention": "none", "coding": "direct"}
TWIN_KEYS = ("study", "dataset", "backbone", "T")
CORRECTIONS = ("holm", "none")
RUN_COLUMNS = (
    "study",
    "cell",
    "dataset",
    "backbone",
    "attention",
    "coding",
    "T",
    "seed",
    "acc",
    "spikes",
    "energy_uj",
)
# ablation.csv, in this order: the variant's coordinates; its twin and the completed seeds each
# side contributed, the diverged seeds each side left out (seeds_matched: both sides use the
# same seed values); the accuracy comparison
# (pp, variant - twin) with its interval, raw and corrected p and the verdict; then spikes
# (reduction with its Fieller interval, raw and corrected p, verdict) and energy, the papers'
# other two claims.
ABLATION_COLUMNS = (
    "study",
    "cell",
    "dataset",
    "backbone",
    "attention",
    "coding",
    "T",
    "twin",
    "seeds",
    "twin_seeds",
    "n_diverged",
    "twin_n_diverged",
    "seeds_matched",
    "acc_mean",
    "twin_acc_mean",
    "acc_delta",
    "acc_delta_ci_low",
    "acc_delta_ci_high",
    "p_value",
    "p_adjusted",
    "significant",
    "spikes_mean",
    "twin_spikes_mean",
    "spike_reduction_pct",
    "spike_reduction_ci_low",
    "spike_reduction_ci_high",
    "spike_reduction_p",
    "spike_reduction_p_adjusted",
    "spikes_significant",
    "energy_uj_mean",
    "twin_energy_uj_mean",
    "energy_ratio",
)
NA = "n/a"


# -- twins -------------------------------------------------------------------------------------
def is_vanilla(row: Mapping[str, Any]) -> bool:
    return all(row[k] == v for k, v in VANILLA.items())


def vanilla_twin(row: Mapping[str, Any], cells: pd.DataFrame) -> str | None:
    """The cell id with the same study, dataset, backbone, T and attention 'none', coding
    'direct' — the vanilla SNN the variant is compared against; None if the study has no such
    cell or the row is itself vanilla.

    `cells` needs the columns of TWIN_KEYS, attention, coding and cell; repeated rows of one
    cell (e.g. the runs frame, one row per seed) are fine. Two different matching ids would
    make the comparison ambiguous, so that raises.
    """
    if is_vanilla(row):
        return None
    mask = np.ones(len(cells), dtype=bool)
    for key, want in [*((k, row[k]) for k in TWIN_KEYS), *VANILLA.items()]:
        mask &= (cells[key] == want).to_numpy()
    ids = list(dict.fromkeys(cells.loc[mask, "cell"]))
    if len(ids) > 1:
        raise ValueError(
            f"study {row['study']!r}: cell {row.get('cell')!r} has several vanilla "
            f"twins {ids}; cell ids must be unique per coordinates"
        )
    return str(ids[0]) if ids else None


# -- checks ------------------------------------------------------------------------------------
def _studies(runs: pd.DataFrame) -> str:
    names = list(dict.fromkeys(runs["study"])) if "study" in runs and len(runs) else []
    return ", ".join(map(repr, names)) if names else "<unknown>"


def _check_runs(runs: pd.DataFrame, correction: str) -> None:
    """Refuse input that would give a wrong table rather than a visibly incomplete one."""
    if correction not in CORRECTIONS:
        raise ValueError(
            f"ablation: unknown correction {correction!r}; allowed: {', '.join(CORRECTIONS)}"
        )
    missing = [c for c in RUN_COLUMNS if c not in runs.columns]
    if missing:
        raise ValueError(
            f"ablation of study {_studies(runs)}: runs frame lacks columns "
            f"{missing} (needs {list(RUN_COLUMNS)})"
        )
    if runs.empty:
        raise ValueError(
            f"ablation of study {_studies(runs)}: runs frame is empty; "
            "run the train and energy stages first"
        )
    dup = runs.duplicated(["study", "cell", "seed"], keep=False)
    if dup.any():
        first = runs[dup].iloc[0]
        raise ValueError(
            f"study {first['study']!r}: cell {first['cell']!r} seed "
            f"{first['seed']} appears more than once in the runs frame"
        )
    axes = ["dataset", "backbone", "attention", "coding", "T"]
    mixed = runs.groupby(["study", "cell"], sort=False)[axes].nunique().gt(1).any(axis=1)
    if mixed.any():
        study, cell = mixed[mixed].index[0]
        raise ValueError(f"study {study!r}: cell {cell!r} has rows with different coordinates")
    if "status" in runs.columns and not runs["status"].isin(RUN_STATUSES).all():
        first = runs[~runs["status"].isin(RUN_STATUSES)].iloc[0]
        raise ValueError(
            f"study {first['study']!r}: cell {first['cell']!r} seed "
            f"{first['seed']} has unknown status {first['status']!r}"
        )
    done = _completed(runs)  # a diverged run's values are NaN by design
    values = runs.loc[done, ["acc", "spikes", "energy_uj"]].apply(pd.to_numeric, errors="coerce")
    bad = ~np.isfinite(values.to_numpy(dtype=float)).all(axis=1)
    if bad.any():
        first = runs[done][bad].iloc[0]
        raise ValueError(
            f"study {first['study']!r}: cell {first['cell']!r} seed "
            f"{first['seed']} has a missing or non-finite acc/spikes/energy_uj"
        )


def _completed(runs: pd.DataFrame) -> pd.Series:
    """True for completed runs; every run of a frame without `status` completed."""
    if "status" not in runs.columns:
        return pd.Series(True, index=runs.index)
    return runs["status"].eq(COMPLETED)


# -- the table ---------------------------------------------------------------------------------
def _seed_values(
    variant: pd.DataFrame, twin: pd.DataFrame, min_seeds: int
) -> tuple[pd.DataFrame, pd.DataFrame, bool]:
    """Both sides restricted to their common seeds when that leaves a testable comparison.

    Returns (variant rows, twin rows, seeds_matched). With the usual grid every cell has the
    same seeds and nothing is dropped; with a half-finished sweep the means cover the same
    seed list when there are at least `min_seeds` common seeds, and all seeds otherwise.
    """
    sv, st = set(variant["seed"]), set(twin["seed"])
    if sv == st:
        return variant, twin, True
    common = sv & st
    if len(common) >= min_seeds:
        return variant[variant["seed"].isin(common)], twin[twin["seed"].isin(common)], True
    return variant, twin, False


def _ratio(num: float, den: float) -> float:
    """num / den, NaN rather than inf or a ZeroDivisionError when den is 0."""
    return num / den if den != 0 else math.nan


def _compare(
    cell: pd.Series,
    twin_id: str,
    variant: pd.DataFrame,
    twin: pd.DataFrame,
    alpha: float,
    min_seeds: int,
) -> dict[str, Any]:
    """One ablation row, before the multiple-comparison correction. `variant` and `twin` hold
    every run of each cell; only the completed ones are compared."""
    diverged = int((~_completed(variant)).sum()), int((~_completed(twin)).sum())
    variant, twin = variant[_completed(variant)], twin[_completed(twin)]
    variant, twin, matched = _seed_values(variant, twin, min_seeds)
    acc = welch(variant["acc"], twin["acc"], alpha, min_seeds)
    spikes = welch(variant["spikes"], twin["spikes"], alpha, min_seeds)
    ratio = fieller_ratio(variant["spikes"], twin["spikes"], alpha, min_seeds)
    energy, twin_energy = float(variant["energy_uj"].mean()), float(twin["energy_uj"].mean())
    return {
        **{k: cell[k] for k in ("study", "cell", "dataset", "backbone", "attention", "coding")},
        "T": int(cell["T"]),
        "twin": twin_id,
        "seeds": acc.n_a,
        "twin_seeds": acc.n_b,
        "n_diverged": diverged[0],
        "twin_n_diverged": diverged[1],
        "seeds_matched": matched,
        "acc_mean": acc.mean_a,
        "twin_acc_mean": acc.mean_b,
        "acc_delta": acc.diff,
        "acc_delta_ci_low": acc.ci_low,
        "acc_delta_ci_high": acc.ci_high,
        "p_value": acc.p_value,
        "testable": acc.testable,
        "spikes_mean": spikes.mean_a,
        "twin_spikes_mean": spikes.mean_b,
        "spike_reduction_pct": 100.0 * (1.0 - _ratio(spikes.mean_a, spikes.mean_b)),
        # reduction = 100 (1 - ratio): the ratio's upper end is the reduction's lower end
        "spike_reduction_ci_low": 100.0 * (1.0 - ratio.high),
        "spike_reduction_ci_high": 100.0 * (1.0 - ratio.low),
        "spike_reduction_p": spikes.p_value,
        "energy_uj_mean": energy,
        "twin_energy_uj_mean": twin_energy,
        "energy_ratio": _ratio(twin_energy, energy),
    }


def _adjust(rows: pd.DataFrame, correction: str, column: str = "p_value") -> pd.Series:
    """Holm over `column` within each study (a study's variants are one family per claim), or
    the raw p-values."""
    if correction == "none":
        return rows[column].astype(float)
    adjusted = pd.Series(math.nan, index=rows.index, dtype=float)
    for _, group in rows.groupby("study", sort=False):
        adjusted[group.index] = holm(group[column])
    return adjusted


def _verdict(p_adjusted: pd.Series, testable: pd.Series, alpha: float) -> pd.arrays.BooleanArray:
    """p_adjusted < alpha where tested, NA where not."""
    verdict = [(p < alpha) if ok else pd.NA for p, ok in zip(p_adjusted, testable)]
    return pd.array(verdict, dtype="boolean")


def ablation_table(
    runs: pd.DataFrame, alpha: float = 0.05, min_seeds: int = 3, correction: str = "holm"
) -> pd.DataFrame:
    """One row per non-vanilla cell that has a vanilla twin, in the order cells first appear
    in `runs`, with the columns of ABLATION_COLUMNS.

    acc_delta is variant - twin in percentage points with its (1 - alpha) Welch interval;
    p_value is the two-sided Welch test on per-seed accuracy, p_adjusted is Holm-adjusted
    over the rows of the same study (or equal to p_value when `correction` is 'none') and
    `significant` is p_adjusted < alpha, NA when either side has fewer than `min_seeds`
    completed seeds. Diverged runs are left out and counted in n_diverged / twin_n_diverged;
    a cell whose seeds all diverged still gets its row (or its variants' rows, as their
    twin), with NaN means and no test. spike_reduction_pct = 100 (1 - spikes / twin spikes)
    with Fieller's (1 - alpha) interval of the ratio turned into reductions
    (spike_reduction_ci_low/high; NaN when untested or unbounded, see stats.fieller_ratio),
    the Welch p-value of the spike means (spike_reduction_p), its Holm adjustment over the
    study's spike tests (spike_reduction_p_adjusted; a family of its own, so the accuracy
    p-values are adjusted exactly as before) and spikes_significant, the same rule as
    `significant`; energy_ratio = twin energy / variant energy (> 1: the
    variant is more efficient, as the papers' "3.4x"). alpha, min_seeds and correction are
    kept in `.attrs`.
    """
    _check_runs(runs, correction)
    cells = runs.drop_duplicates(["study", "cell"])
    groups = {key: frame for key, frame in runs.groupby(["study", "cell"], sort=False)}
    rows = []
    for _, cell in cells.iterrows():
        twin_id = vanilla_twin(cell, cells)
        if twin_id is not None:
            rows.append(
                _compare(
                    cell,
                    twin_id,
                    groups[(cell["study"], cell["cell"])],
                    groups[(cell["study"], twin_id)],
                    alpha,
                    min_seeds,
                )
            )
    table = pd.DataFrame(rows, columns=[*ABLATION_COLUMNS, "testable"])
    for p, adjusted, verdict in (
        ("p_value", "p_adjusted", "significant"),
        ("spike_reduction_p", "spike_reduction_p_adjusted", "spikes_significant"),
    ):
        table[adjusted] = _adjust(table, correction, p) if rows else pd.Series(dtype=float)
        table[verdict] = _verdict(table[adjusted], table["testable"], alpha)
    table = table[list(ABLATION_COLUMNS)].reset_index(drop=True)
    table.attrs.update(alpha=alpha, min_seeds=min_seeds, correction=correction)
    return table


# -- human formatting --------------------------------------------------------------------------
def signed(value: float, decimals: int = 2) -> str:
    """'+1.23' / '-0.40'; a value that rounds to zero is '+0.00', never '-0.00'."""
    text = f"{value:+.{decimals}f}"
    return "+" + text[1:] if float(text) == 0 else text


def _count(value: Any) -> int:
    """A diverged-seed count; 0 where the column is absent (a table from before divergence)."""
    return 0 if value is None or pd.isna(value) else int(value)


def seed_sides(r: pd.Series) -> list[tuple[str, int, int]]:
    """(side, completed seeds, diverged seeds) of the variant and its twin."""
    return [
        ("variant", int(r["seeds"]), _count(r.get("n_diverged"))),
        ("twin", int(r["twin_seeds"]), _count(r.get("twin_n_diverged"))),
    ]


def untested_reason(r: pd.Series, min_seeds: int | None) -> str:
    """Why a row has no p: a side whose seeds all diverged, or too few (completed) seeds."""
    sides = seed_sides(r)
    gone = [f"{side}: all {k} diverged" for side, n, k in sides if n == 0 and k]
    if gone:
        return f"{NA} ({'; '.join(gone)})"
    _, n, diverged = min(sides, key=lambda side: side[1])  # the side short of seeds
    reason = f"{n} seeds < {min_seeds}" if min_seeds else f"{n} seeds"
    return f"{NA} ({reason}, {diverged} diverged)" if diverged else f"{NA} ({reason})"


def fmt_p_value(p: float) -> str:
    """'0.012', '<0.001'."""
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _fmt_p(r: pd.Series, min_seeds: int | None, column: str = "p_adjusted") -> str:
    p = r.get(column, math.nan)  # a table from before spike p-values were adjusted: n/a
    if pd.isna(p):
        return untested_reason(r, min_seeds)
    return fmt_p_value(p)


def _unsigned(value: float, decimals: int = 1) -> str:
    """'85.0', '-3.2'; never '-0.0'."""
    text = f"{value:.{decimals}f}"
    return text[1:] if float(text) == 0 and text.startswith("-") else text


def spike_interval(r: pd.Series) -> str | None:
    """Why the spike reduction's interval is missing: 'unbounded' (tested, but Fieller's set
    is not an interval), 'n/a' (untested); None when it exists."""
    if not pd.isna(r.get("spike_reduction_ci_low", math.nan)):
        return None
    tested = not pd.isna(r.get("spike_reduction_p", math.nan))
    return "unbounded" if tested and math.isfinite(r["spike_reduction_pct"]) else NA


def _fmt_spike_ci(r: pd.Series) -> str:
    missing = spike_interval(r)
    if missing is not None:
        return missing
    low, high = r["spike_reduction_ci_low"], r["spike_reduction_ci_high"]
    return f"[{_unsigned(low)}, {_unsigned(high)}]"


def _fmt_verdict(value: Any) -> str:
    return NA if value is None or pd.isna(value) else ("yes" if value else "no")


def _fmt_delta(r: pd.Series) -> str:
    if not math.isfinite(r["acc_delta"]):  # a side has no completed seed
        return NA
    ci = (
        f"{signed(r['acc_delta_ci_low'])}, {signed(r['acc_delta_ci_high'])}"
        if not math.isnan(r["acc_delta_ci_low"])
        else NA
    )
    return f"{signed(r['acc_delta'])} [{ci}]"


def _fmt(value: float, spec: str, suffix: str = "") -> str:
    return NA if not math.isfinite(value) else f"{value:{spec}}{suffix}"


def ablation_human(table: pd.DataFrame, min_seeds: int | None = None) -> pd.DataFrame:
    """The readable table shared by Markdown and LaTeX (plain Unicode; LaTeX escapes later).

    `min_seeds` only words the untested p ('n/a (2 seeds < 3)'); by default it is the one
    ablation_table recorded in `table.attrs` (a table read back from CSV has none). Seeds
    reads '3 vs 3', '2, 1 diverged vs 3' or '3 vs all 3 diverged' (completed seeds, and the
    diverged ones left out, of the variant and of its twin). p (adj.) and Significant are the
    accuracy test's; the spike test has its own columns after Spikes -%.
    """
    min_seeds = min_seeds if min_seeds is not None else table.attrs.get("min_seeds")
    axes = label_axes(table) if len(table) else ["attention", "coding", "T"]
    several = table["study"].nunique() > 1
    rows = []
    for _, r in table.iterrows():
        twin = r.copy()
        twin["attention"], twin["coding"] = VANILLA["attention"], VANILLA["coding"]
        rows.append(
            {
                **({"Study": r["study"]} if several else {}),
                "Variant": cell_label(r, axes),
                "vs": cell_label(twin, axes),
                "Seeds": " vs ".join(seed_note(n, k) for _, n, k in seed_sides(r)),
                "Acc. Δ (pp)": _fmt_delta(r),
                "p (adj.)": _fmt_p(r, min_seeds),
                "Significant": _fmt_verdict(r["significant"]),
                "Spikes -%": _fmt(r["spike_reduction_pct"], ".1f"),
                "Spikes -% CI": _fmt_spike_ci(r),
                "Spikes p (adj.)": _fmt_p(r, min_seeds, "spike_reduction_p_adjusted"),
                "Spikes sig.": _fmt_verdict(r.get("spikes_significant")),
                "Energy ratio": _fmt(r["energy_ratio"], ".2f", "×"),
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            *(["Study"] if several else []),
            "Variant",
            "vs",
            "Seeds",
            "Acc. Δ (pp)",
            "p (adj.)",
            "Significant",
            "Spikes -%",
            "Spikes -% CI",
            "Spikes p (adj.)",
            "Spikes sig.",
            "Energy ratio",
        ],
    )


def ablation_caption(table: pd.DataFrame, alpha: float, min_seeds: int, correction: str) -> str:
    """What each column means and how significance was decided, so the table stands alone."""
    if correction not in CORRECTIONS:
        raise ValueError(
            f"ablation: unknown correction {correction!r}; allowed: {', '.join(CORRECTIONS)}"
        )
    level = f"{100 * (1 - alpha):g}%"
    adjust = (
        "Holm-Bonferroni-adjusted within each study"
        if correction == "holm"
        else "not adjusted for multiple comparisons"
    )
    parts = [
        "Each variant is compared with its vanilla twin: the cell of the same study with "
        "attention none and direct coding, on the same dataset, backbone and T.",
        "Acc. Δ: mean final test accuracy of the variant minus that of the twin, in "
        f"percentage points, with its {level} Welch confidence interval in brackets.",
        "p: two-sided Welch t-test on the per-seed final test accuracies (unpaired: the same "
        f"seed does not pair initialisations across architectures), {adjust}.",
        f"Significant: p < {alpha:g}.",
        f"Cells where either side has fewer than {min_seeds} seeds are not tested (n/a).",
        "Spikes -%: reduction of the mean spikes per sample relative to the twin, "
        "100 (1 - variant / twin); positive means fewer spikes.",
        f"Spikes -% CI: its {level} Fieller confidence interval (the ratio of the two means, "
        "with Welch standard errors and df, so the twin's mean counts as uncertain too; it "
        "excludes 0 exactly when the unadjusted spike test has p < "
        f"{alpha:g}; 'unbounded' where the twin's spikes are not distinguishable from 0).",
        "Spikes p: two-sided Welch t-test on the per-seed mean spikes per sample, "
        f"{adjust} as a family of its own (separately from accuracy); "
        f"Spikes sig.: that p < {alpha:g}.",
        "Energy ratio: twin energy / variant energy per sample; above 1× the variant is "
        "more energy-efficient.",
    ]
    if len(table) and not table["seeds_matched"].astype(bool).all():
        parts.append(
            f"Seeds are matched by value where the two cells share at least "
            f"{min_seeds}; otherwise each mean uses all of its own seeds."
        )
    if any(
        c in table.columns and table[c].fillna(0).gt(0).any()
        for c in ("n_diverged", "twin_n_diverged")
    ):
        parts.append(
            "Runs whose training loss became NaN or infinite (diverged) are left "
            "out: each side is compared over its completed seeds only, Seeds reads "
            "'n, k diverged' for n completed and k diverged seeds, and a side with "
            f"fewer than {min_seeds} completed seeds is not tested (n/a, with the "
            "reason)."
        )
    return " ".join(parts)


# -- rendering ---------------------------------------------------------------------------------
def empty_note(name: str) -> str:
    return (
        f"No variant in {name} has a vanilla twin (attention none, direct coding, same "
        "dataset, backbone and T), so there is nothing to compare."
    )


def _markdown(name: str, human: pd.DataFrame, caption: str) -> str:
    left = sum(c in ("Study", "Variant", "vs") for c in human.columns)
    body = human.to_markdown(
        index=False,
        disable_numparse=True,  # keep "85.0", not "85"
        colalign=("left",) * left + ("right",) * (human.shape[1] - left),
    )
    return f"# {name}: ablations\n\n{body}\n\n{caption}\n"


def _latex(name: str, human: pd.DataFrame, caption: str) -> str:
    """A booktabs `table` float, built like tables.render_latex."""
    escaped = human.map(latex_escape)
    escaped.columns = [latex_escape(c) for c in human.columns]
    left = sum(c in ("Study", "Variant", "vs") for c in human.columns)
    return escaped.style.hide(axis="index").to_latex(
        hrules=True,
        position="htbp",
        position_float="centering",
        column_format="l" * left + "r" * (human.shape[1] - left),
        caption=latex_escape(caption),
        label=f"tab:{name}-ablation",
    )


def _latex_note(name: str) -> str:
    return (
        "\\begin{table}[htbp]\n\\centering\n" + latex_escape(empty_note(name)) + "\n"
        f"\\caption{{{latex_escape(name)}: ablations}}\n\\label{{tab:{name}-ablation}}\n"
        "\\end{table}\n"
    )


def render_ablation(name: str, table: pd.DataFrame, caption: str) -> dict[str, str]:
    """{'ablation.md', 'ablation.tex', 'ablation.csv'} for `table` (an ablation_table).

    An empty table (no variant has a twin) renders a note instead of an empty grid, and a
    header-only CSV, so a study without a vanilla cell still gets its report files.
    """
    csv = table.to_csv(index=False, na_rep="NaN")
    if table.empty:
        note = empty_note(name)
        return {
            "ablation.md": f"# {name}: ablations\n\n{note}\n",
            "ablation.tex": _latex_note(name),
            "ablation.csv": csv,
        }
    human = ablation_human(table)
    return {
        "ablation.md": _markdown(name, human, caption),
        "ablation.tex": _latex(name, human, caption),
        "ablation.csv": csv,
    }
