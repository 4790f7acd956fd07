"""The paper's headline: one sentence per variant against its vanilla twin, for a README.

The papers sell each module by two numbers against the plain SNN (MA-SNN on Gesture: -84.9%
spikes, +5.9% accuracy). reports/<paper>/headline.md states ours the same way, each with its
interval and test, e.g.

    TCSA vs none (dvs, seeds 3 vs 3): spikes -85.0% [95% CI -88.7, -79.4], p=0.009,
    significant; accuracy +5.00 pp [95% CI +2.73, +7.27], p=0.007, significant

(tests/report/test_headline.py's hand-built study 'dvs').

Every number is read from the ablation table (ablation.csv's columns), never recomputed, so
the headline cannot disagree with the table. The spike change is minus the table's
reduction (-85.0% = 85.0% fewer spikes) and its interval the reduction's, negated. p is the
adjusted p of the table and "significant" its verdict (adjusted p < alpha). A comparison
without a test says n/a and why ('p n/a (2 seeds < 3)'), one without values says why it has
none ('n/a (twin: all 3 diverged)').
"""

from __future__ import annotations

import html
from typing import Any, Mapping

import pandas as pd

from .ablation import (
    CORRECTIONS,
    NA,
    VANILLA,
    empty_note,
    fmt_p_value,
    seed_sides,
    signed,
    spike_interval,
    untested_reason,
)
from .formatting import cell_label, seed_note

FILE = "headline.md"


def _axes(rows: pd.DataFrame) -> list[str]:
    """What names a variant within its study: dataset, backbone and T only where the study's
    rows differ in them, attention always, coding where any row is not direct coding."""
    axes = [a for a in ("dataset", "backbone", "T") if rows[a].nunique() > 1]
    axes.append("attention")
    if rows["coding"].ne(VANILLA["coding"]).any():
        axes.append("coding")
    return axes


def _verdict(value: Any) -> str:
    return "not tested" if pd.isna(value) else ("significant" if value else "not significant")


def _test(r: pd.Series, p_column: str, verdict_column: str, min_seeds: int | None) -> str:
    """'p=0.004, significant' or 'p n/a (2 seeds < 3)'."""
    p = r[p_column]
    if pd.isna(p):
        return "p " + untested_reason(r, min_seeds)
    value = fmt_p_value(p)  # '<0.001' carries its own relation
    return f"p{'' if value.startswith('<') else '='}{value}, {_verdict(r[verdict_column])}"


def _claim(change: str, interval: str | None, test: str, level: str) -> str:
    """'spikes -85.0% [95% CI -88.7, -79.4], p=0.009, significant'; no brackets without an
    interval."""
    return f"{change}, {test}" if interval is None else f"{change} [{level} CI {interval}], {test}"


def _spikes(r: pd.Series, min_seeds: int | None, level: str) -> str:
    if not pd.notna(r["spike_reduction_pct"]):
        return "spikes " + untested_reason(r, min_seeds)
    change = f"spikes {signed(-r['spike_reduction_pct'], 1)}%"
    test = _test(r, "spike_reduction_p_adjusted", "spikes_significant", min_seeds)
    missing = spike_interval(r)
    if missing == NA:  # untested: no interval to show
        return _claim(change, None, test, level)
    interval = (
        missing
        if missing is not None
        else f"{signed(-r['spike_reduction_ci_high'], 1)}, "
        f"{signed(-r['spike_reduction_ci_low'], 1)}"
    )
    return _claim(change, interval, test, level)


def _accuracy(r: pd.Series, min_seeds: int | None, level: str) -> str:
    if not pd.notna(r["acc_delta"]):
        return "accuracy " + untested_reason(r, min_seeds)
    change = f"accuracy {signed(r['acc_delta'])} pp"
    test = _test(r, "p_adjusted", "significant", min_seeds)
    interval = (
        None
        if pd.isna(r["acc_delta_ci_low"])
        else f"{signed(r['acc_delta_ci_low'])}, {signed(r['acc_delta_ci_high'])}"
    )
    return _claim(change, interval, test, level)


def headline_lines(
    table: pd.DataFrame, alpha: float, min_seeds: int | None = None
) -> dict[str, list[str]]:
    """{study: [one sentence per variant, in table order]} from an ablation_table (or its
    CSV read back). `min_seeds` words an untested p, as in ablation_human."""
    level = f"{100 * (1 - alpha):g}%"
    lines: dict[str, list[str]] = {}
    for study, rows in table.groupby("study", sort=False):
        axes = _axes(rows)
        for _, r in rows.iterrows():
            twin = r.copy()
            twin["attention"], twin["coding"] = VANILLA["attention"], VANILLA["coding"]
            seeds = " vs ".join(seed_note(n, k) for _, n, k in seed_sides(r))
            lines.setdefault(str(study), []).append(
                f"{cell_label(r, axes)} vs {cell_label(twin, axes)} ({study}, seeds {seeds}): "
                f"{_spikes(r, min_seeds, level)}; {_accuracy(r, min_seeds, level)}"
            )
    return lines


def headline_note(alpha: float, min_seeds: int, correction: str) -> str:
    """How to read a headline line; the same words in headline.md and tables.html."""
    if correction not in CORRECTIONS:
        raise ValueError(
            f"headline: unknown correction {correction!r}; allowed: {', '.join(CORRECTIONS)}"
        )
    level = f"{100 * (1 - alpha):g}%"
    adjust = (
        "Holm-adjusted within each study, spikes and accuracy as separate families"
        if correction == "holm"
        else "not adjusted for multiple comparisons"
    )
    return (
        "Each variant against its vanilla twin (the cell of the same study, dataset, backbone "
        "and T with attention none and direct coding), read from ablation.csv. "
        "spikes: change of the mean spikes per sample, in percent of the twin's (negative: "
        f"fewer spikes), with its {level} Fieller confidence interval. accuracy: change of "
        f"the mean final test accuracy in percentage points, with its {level} Welch "
        "confidence interval. p: two-sided Welch t-test over seeds (unpaired), "
        f"{adjust}; significant: p < {alpha:g}. seeds: completed seeds of the variant vs "
        f"its twin; with fewer than {min_seeds} on a side there is no test (n/a)."
    )


def render_headline(
    name: str, table: pd.DataFrame, alpha: float, min_seeds: int, correction: str
) -> dict[str, str]:
    """{'headline.md': ...}: a title, how to read it, then the lines grouped by study."""
    note = headline_note(alpha, min_seeds, correction)
    lines = headline_lines(table, alpha, min_seeds)
    if not lines:
        return {FILE: f"# {name}: headline\n\n{empty_note(name)}\n"}
    groups = [
        f"## {study}\n\n" + "\n".join(f"- {line}" for line in study_lines)
        for study, study_lines in lines.items()
    ]
    return {FILE: f"# {name}: headline\n\n{note}\n\n" + "\n\n".join(groups) + "\n"}


def headline_html(lines: Mapping[str, list[str]]) -> str:
    """The lines as one HTML list per study, escaped, for tables.html."""
    if not lines:
        return "<p>No variant has a vanilla twin in these studies.</p>"
    return "\n".join(
        f'<h3>{html.escape(study)}</h3>\n<ul class="headline">'
        + "".join(f"<li>{html.escape(line)}</li>" for line in study_lines)
        + "</ul>"
        for study, study_lines in lines.items()
    )
