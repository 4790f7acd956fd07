"""Figures of a study, drawn from the same tables as the report (never from MLflow).

Figures are built with `matplotlib.figure.Figure` directly, not pyplot: no backend is selected
or switched, nothing is registered globally, and nothing leaks from one call to the next, so the
report stage can run anywhere (headless CI, a worker process) next to other matplotlib users.
Saved SVGs are byte-for-byte reproducible, so a rebuilt report only changes when the data does.

Diverged runs (training loss NaN or infinite) are never a point, a mean or a band: a cell
whose seeds all diverged has no point, and a note under each figure names the diverged runs
(diverged_note). Training curves still draw a diverged run's completed epochs, dashed and
ending in a cross, apart from the means. A study where everything diverged gets a figure
that says so rather than an error.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Sequence

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..io import atomic_path
from ..paths import FIGURE_FORMATS
from ..records import COMPLETED, DIVERGED
from .formatting import cell_label, label_axes

DPI = 150
SVG_HASHSALT = "spikeattn"  # fixed ids for clip paths etc., instead of a random uuid per save
LEGEND_OUTSIDE_AFTER = 6  # more entries than this would cover the data: legend goes outside
ENERGY_LABEL = "Energy per sample (µJ)"
ACC_LABEL = "Test accuracy (%)"
NOTE_CHARS_PER_INCH = 17  # wraps the note under a figure at 7 pt
DIVERGED_CURVE = "diverged run (× last completed epoch)"

PARETO_REQUIRED = ("dataset", "backbone", "attention", "coding", "T", "acc_mean", "energy_uj_mean")
RATES_REQUIRED = ("label", "layer", "rate")
HISTORY_REQUIRED = ("label", "seed", "epoch", "train_loss", "test_acc")


# -- checks ------------------------------------------------------------------------------------
def _require(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    """Fail with the missing columns (or rows) named, rather than a KeyError deep in matplotlib."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(
            f"{what} is missing required column(s): {', '.join(missing)} "
            f"(has: {', '.join(map(str, df.columns)) or 'none'})"
        )
    if df.empty:
        raise ValueError(f"{what} has no rows: nothing to plot")


def _no_duplicates(df: pd.DataFrame, keys: list[str], what: str) -> None:
    """Duplicate keys would be averaged or joined silently; name them instead."""
    dup = df[df.duplicated(keys, keep=False)][keys].drop_duplicates()
    if len(dup):
        shown = "; ".join(
            ", ".join(f"{k}={v!r}" for k, v in zip(keys, row))
            for row in dup.itertuples(index=False)
        )
        raise ValueError(f"{what} has duplicate rows for: {shown}")


def _column(df: pd.DataFrame, name: str) -> np.ndarray:
    """A float column, or all-NaN when it is absent (optional spreads and targets)."""
    if name not in df.columns:
        return np.full(len(df), math.nan)
    return df[name].to_numpy(dtype=float)


def _ordered(values: pd.Series) -> list:
    """Unique values in order of first appearance (the caller's order is the meaningful one)."""
    return list(pd.unique(values))


# -- saving ------------------------------------------------------------------------------------
def save_figure(fig: Figure, stem: Path) -> list[Path]:
    """Write `stem`.png and `stem`.svg atomically and return their paths.

    The suffix is appended (not substituted), so stems containing dots such as "T=0.5" survive.
    The SVG carries no date and uses fixed element ids, so re-saving identical data gives
    identical bytes; the PNG drops the Software tag for the same reason.
    """
    stem = Path(stem)
    metadata = {"png": {"Software": None}, "svg": {"Date": None}}
    paths = []
    with matplotlib.rc_context({"svg.hashsalt": SVG_HASHSALT}):
        for fmt in FIGURE_FORMATS:
            path = stem.with_name(f"{stem.name}.{fmt}")
            with atomic_path(path) as tmp:
                # format= is required: the temporary file's ".tmp" suffix names no format.
                fig.savefig(tmp, format=fmt, dpi=DPI, metadata=metadata[fmt])
            paths.append(path)
    return paths


# -- shared drawing ----------------------------------------------------------------------------
def _new_figure(width: float = 6.4, height: float = 4.8) -> Figure:
    """Constrained layout keeps rotated tick labels and outside legends inside the canvas."""
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _freeze_layout(fig: Figure) -> Figure:
    """Lay the figure out once, then keep that layout.

    Constrained layout starts from the positions of the previous draw, so every save would
    shift things by a fraction of a pixel and no two SVGs would be identical. Laying out once
    from the fresh figure (at the saving dpi) and switching the engine off makes each save, and
    each figure rebuilt from the same data, draw the same thing.
    """
    fig.draw_without_rendering()
    fig.set_layout_engine("none")
    return fig


def _legend(fig: Figure, ax: Axes, n_entries: int) -> None:
    """Legend at the best spot inside the axes, or to the right of the figure when crowded."""
    if n_entries > LEGEND_OUTSIDE_AFTER:
        handles, labels = ax.get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside right upper", fontsize=8)
    else:
        ax.legend(loc="best", fontsize=8)


def _spans_decades(values: np.ndarray, decades: float = 1.0) -> bool:
    """Log scale only pays off when positive values span more than `decades` decades."""
    finite = values[np.isfinite(values)]
    if finite.size == 0 or finite.min() <= 0:
        return False
    return math.log10(finite.max() / finite.min()) > decades


# -- diverged runs -----------------------------------------------------------------------------
def _counts(summary: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(completed, diverged) seeds per summary row; a summary without the columns (written
    before runs could diverge) has no diverged run."""
    seeds = _column(summary, "seeds")
    diverged = np.nan_to_num(_column(summary, "n_diverged"), nan=0.0).astype(int)
    if "status" in summary.columns:  # a fully diverged cell has 0 completed seeds
        seeds = np.where(summary["status"].eq(DIVERGED).to_numpy(), 0, seeds)
    return np.nan_to_num(seeds, nan=0.0).astype(int), diverged


def _drawable(summary: pd.DataFrame) -> np.ndarray:
    """True for the cells that have at least one completed seed."""
    if "status" not in summary.columns:
        return np.ones(len(summary), dtype=bool)
    return ~summary["status"].eq(DIVERGED).to_numpy()


def diverged_note(summary: pd.DataFrame) -> str:
    """'Diverged runs, left out: <cell>: 1 of 3 seeds; <cell>: all 3 seeds (no point).' from a
    summary table (summary.csv), or '' when no run diverged."""
    if "n_diverged" not in summary.columns or summary.empty:
        return ""
    labels = [cell_label(row, label_axes(summary)) for _, row in summary.iterrows()]
    completed, diverged = _counts(summary)
    parts = [
        f"{label}: all {k} seeds (no point)" if n == 0 else f"{label}: {k} of {n + k} seeds"
        for label, n, k in zip(labels, completed, diverged)
        if k > 0
    ]
    if not parts:
        return ""
    return (
        "Diverged runs (training loss NaN or infinite), left out of every point and mean: "
        + "; ".join(parts)
        + "."
    )


def _add_note(fig: Figure, note: str) -> None:
    """The note under the figure, wrapped to its width (constrained layout makes room)."""
    if note:
        width = max(40, int(fig.get_figwidth() * NOTE_CHARS_PER_INCH))
        fig.supxlabel(textwrap.fill(note, width), fontsize=7, color="0.25")


def _nothing_drawn(title: str, message: str, note: str) -> Figure:
    """A figure that says why it is empty (every run diverged), instead of failing the stage."""
    fig = _new_figure()
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, fontsize=10)
    ax.set_title(title)
    _add_note(fig, note)
    return _freeze_layout(fig)


# -- Pareto ------------------------------------------------------------------------------------
def pareto_front(summary: pd.DataFrame) -> pd.Series:
    """True for cells no other cell beats: none has lower-or-equal energy and higher-or-equal
    accuracy with one strictly better. Exact ties are all kept (neither dominates the other);
    cells with a NaN accuracy or energy can be neither on the front nor dominate it."""
    _require(summary, ("acc_mean", "energy_uj_mean"), "summary")
    energy, acc = _column(summary, "energy_uj_mean"), _column(summary, "acc_mean")
    finite = np.isfinite(energy) & np.isfinite(acc)
    # [i, j]: does cell j dominate cell i?
    no_worse = (energy[None, :] <= energy[:, None]) & (acc[None, :] >= acc[:, None])
    better = (energy[None, :] < energy[:, None]) | (acc[None, :] > acc[:, None])
    dominated = (no_worse & better & finite[None, :]).any(axis=1)
    return pd.Series(finite & ~dominated, index=summary.index, name="pareto")


def _check_finite(summary: pd.DataFrame, labels: list[str]) -> None:
    """A cell without accuracy or energy cannot be placed; say which instead of dropping it."""
    acc, energy = _column(summary, "acc_mean"), _column(summary, "energy_uj_mean")
    bad = ~(np.isfinite(acc) & np.isfinite(energy))
    if bad.any():
        names = ", ".join(label for label, b in zip(labels, bad) if b)
        raise ValueError(f"summary has no finite acc_mean/energy_uj_mean for: {names}")


def _error_bars(ax: Axes, x: np.ndarray, y: np.ndarray, xerr: np.ndarray, yerr: np.ndarray) -> None:
    """Bars only where a std exists (one seed gives NaN: no bar rather than a false zero)."""
    style = {"fmt": "none", "ecolor": "0.6", "elinewidth": 0.8, "capsize": 0, "zorder": 1}
    if (has_y := np.isfinite(yerr)).any():
        ax.errorbar(x[has_y], y[has_y], yerr=yerr[has_y], **style)
    if (has_x := np.isfinite(xerr)).any():
        ax.errorbar(x[has_x], y[has_x], xerr=xerr[has_x], **style)


def _draw_front(ax: Axes, x: np.ndarray, y: np.ndarray) -> None:
    """The attainable staircase: best accuracy reachable within each energy budget."""
    order = np.lexsort((y, x))
    ax.step(
        x[order], y[order], where="post", color="C3", linewidth=1.2, zorder=2, label="Pareto front"
    )
    ax.scatter(x[order], y[order], s=60, color="C3", edgecolors="black", linewidths=0.8, zorder=4)


def pareto_figure(summary: pd.DataFrame, title: str) -> Figure:
    """Accuracy vs energy per sample, one annotated point per cell, with the Pareto front.

    Error bars come from acc_std / energy_uj_std where defined; paper targets (target_acc) are
    hollow diamonds at the cell's measured energy. The energy axis is logarithmic when the cells
    span more than a decade. acc_std, energy_uj_std and target_acc are optional columns.

    With summary.csv's status / seeds / n_diverged columns, a cell whose seeds all diverged
    has no point, one with some diverged seeds is labelled '(k diverged)', and a note under
    the figure names them; if every cell diverged, the figure says so.
    """
    _require(summary, PARETO_REQUIRED, "summary")
    axes = label_axes(summary)
    note = diverged_note(summary)
    _, diverged = _counts(summary)
    labels = [
        cell_label(row, axes) + (f" ({k} diverged)" if k else "")
        for (_, row), k in zip(summary.iterrows(), diverged)
    ]
    shown = _drawable(summary)
    if not shown.any():
        return _nothing_drawn(title, "Every cell diverged: no point to draw.", note)
    summary = summary[shown].reset_index(drop=True)
    labels = [label for label, keep in zip(labels, shown) if keep]
    _check_finite(summary, labels)
    x, y = _column(summary, "energy_uj_mean"), _column(summary, "acc_mean")
    front = pareto_front(summary).to_numpy()

    fig = _new_figure()
    ax = fig.add_subplot()
    _error_bars(ax, x, y, _column(summary, "energy_uj_std"), _column(summary, "acc_std"))
    ax.scatter(x, y, s=25, color="C0", zorder=3, label="Cells")
    _draw_front(ax, x[front], y[front])
    target = _column(summary, "target_acc")
    if (has_target := np.isfinite(target)).any():
        ax.scatter(
            x[has_target],
            target[has_target],
            s=45,
            marker="D",
            facecolors="none",
            edgecolors="C2",
            linewidths=1.2,
            zorder=3,
            label="Paper target",
        )
    for xi, yi, label in zip(x, y, labels):
        ax.annotate(label, (xi, yi), xytext=(4, 4), textcoords="offset points", fontsize=7)

    if _spans_decades(x):
        ax.set_xscale("log")
    ax.set_xlabel(ENERGY_LABEL)
    ax.set_ylabel(ACC_LABEL)
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    _add_note(fig, note)
    return _freeze_layout(fig)


# -- firing rates ------------------------------------------------------------------------------
def firing_rate_figure(layer_rates: pd.DataFrame, title: str, note: str = "") -> Figure:
    """Firing rate of each LIF layer (x, in network order) for each attention variant (lines).

    Layers are ordered by first appearance in `layer_rates`, variants likewise; a variant that
    lacks a layer simply has no point there. rate_std (optional, may be NaN) gives error bars.
    `note` (diverged_note) goes under the figure; with a note, no rows at all (every run
    diverged) gives a figure that says so.
    """
    if note and layer_rates.empty:
        return _nothing_drawn(title, "Every run diverged: no firing rate to draw.", note)
    _require(layer_rates, RATES_REQUIRED, "layer_rates")
    _no_duplicates(layer_rates, ["label", "layer"], "layer_rates")
    layers = _ordered(layer_rates["layer"])
    index = {layer: i for i, layer in enumerate(layers)}
    labels = _ordered(layer_rates["label"])

    fig = _new_figure(max(6.4, 0.35 * len(layers) + 2.5), 4.8)
    ax = fig.add_subplot()
    for i, label in enumerate(labels):
        rows = layer_rates[layer_rates["label"] == label]
        x = rows["layer"].map(index).to_numpy(dtype=float)
        order = np.argsort(x, kind="stable")
        x, y, err = x[order], _column(rows, "rate")[order], _column(rows, "rate_std")[order]
        ax.plot(x, y, marker="o", markersize=4, color=f"C{i % 10}", label=str(label))
        if (has := np.isfinite(err)).any():
            ax.errorbar(
                x[has],
                y[has],
                yerr=err[has],
                fmt="none",
                ecolor=f"C{i % 10}",
                elinewidth=0.8,
                capsize=0,
                alpha=0.6,
            )
    ax.set_xticks(
        range(len(layers)),
        [str(layer) for layer in layers],
        rotation=45,
        ha="right",
        rotation_mode="anchor",
        fontsize=8,
    )
    ax.set_xlabel("Layer")
    ax.set_ylabel("Firing rate")
    ax.set_ylim(bottom=0)
    ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    _legend(fig, ax, len(labels))
    _add_note(fig, note)
    return _freeze_layout(fig)


# -- training curves ---------------------------------------------------------------------------
def _seed_stats(rows: pd.DataFrame, column: str, scale: float = 1.0) -> pd.DataFrame:
    """Mean, min and max over seeds per epoch (an epoch some seeds lack uses those that have it)."""
    stats = rows.groupby("epoch", sort=True)[column].agg(["mean", "min", "max"])
    return stats * scale


def _curve(ax: Axes, stats: pd.DataFrame, color: str, label: str, band: bool) -> None:
    epochs = stats.index.to_numpy(dtype=float)
    ax.plot(epochs, stats["mean"].to_numpy(), color=color, linewidth=1.4, label=label)
    if band:
        ax.fill_between(
            epochs,
            stats["min"].to_numpy(),
            stats["max"].to_numpy(),
            color=color,
            alpha=0.2,
            linewidth=0,
        )


def _diverged_curve(
    ax: Axes, run: pd.DataFrame, column: str, scale: float, color: str, label: str
) -> None:
    """A diverged run's completed epochs: thin and dashed, a cross at the last one."""
    run = run.sort_values("epoch")
    x, y = run["epoch"].to_numpy(dtype=float), run[column].to_numpy(dtype=float) * scale
    ax.plot(x, y, color=color, linewidth=0.9, linestyle="--", alpha=0.8, label=label)
    ax.plot(
        x[-1:], y[-1:], color=color, marker="x", markersize=7, linestyle="none", label="_nolegend_"
    )


def training_curves_figure(histories: pd.DataFrame, title: str, note: str = "") -> Figure:
    """Test accuracy (%) and train loss per epoch, side by side: one line per label, the mean
    over its seeds, with a shaded min–max band when it has more than one seed.

    test_acc is a fraction (0..1) in the input and shown as a percentage. With a `status`
    column, only completed runs make the means and bands; each diverged run's completed
    epochs are drawn on their own, dashed and ending in a cross (a label whose runs all
    diverged is named '<label> (diverged)'). `note` (diverged_note) goes under the figure;
    with a note, no rows at all (every run diverged in its first epoch) gives a figure that
    says so.
    """
    if note and histories.empty and all(c in histories.columns for c in HISTORY_REQUIRED):
        return _nothing_drawn(
            title, "Every run diverged before completing an epoch: no curve to draw.", note
        )
    _require(histories, HISTORY_REQUIRED, "histories")
    _no_duplicates(histories, ["label", "seed", "epoch"], "histories")
    labels = _ordered(histories["label"])
    completed = (
        histories["status"].eq(COMPLETED)
        if "status" in histories.columns
        else pd.Series(True, index=histories.index)
    )

    fig = _new_figure(11.0, 4.2)
    acc_ax, loss_ax = fig.subplots(1, 2)
    any_diverged = False
    for i, label in enumerate(labels):
        mine = histories["label"] == label
        rows, failed = histories[mine & completed], histories[mine & ~completed]
        color = f"C{i % 10}"
        if len(rows):
            band = rows["seed"].nunique() > 1
            _curve(acc_ax, _seed_stats(rows, "test_acc", 100.0), color, str(label), band)
            _curve(loss_ax, _seed_stats(rows, "train_loss"), color, str(label), band)
        for j, (_, run) in enumerate(failed.groupby("seed", sort=False)):
            name = f"{label} (diverged)" if rows.empty and j == 0 else "_nolegend_"
            _diverged_curve(acc_ax, run, "test_acc", 100.0, color, name)
            _diverged_curve(loss_ax, run, "train_loss", 1.0, color, name)
            any_diverged = True
    if any_diverged:  # one legend entry explains every dashed line
        acc_ax.plot(
            [], [], color="0.3", linewidth=0.9, linestyle="--", marker="x", label=DIVERGED_CURVE
        )
    for ax, ylabel in ((acc_ax, ACC_LABEL), (loss_ax, "Train loss")):
        ax.set_xlabel("Epoch")
        ax.set_ylabel(ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
    acc_ax.set_title("Test accuracy")
    loss_ax.set_title("Train loss")
    fig.suptitle(title)
    _legend(fig, acc_ax, len(labels) + any_diverged)
    _add_note(fig, note)
    return _freeze_layout(fig)


__all__ = [
    "FIGURE_FORMATS",
    "save_figure",
    "pareto_front",
    "pareto_figure",
    "firing_rate_figure",
    "training_curves_figure",
    "diverged_note",
]
