"""Report figures: the Pareto rule, what each figure draws, deterministic saving, bad input."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.figure import Figure

from spikeattn.report.figures import (
    DIVERGED_CURVE,
    FIGURE_FORMATS,
    diverged_note,
    firing_rate_figure,
    pareto_figure,
    pareto_front,
    save_figure,
    training_curves_figure,
)

NAN = math.nan


def _summary(rows: list[tuple], **const) -> pd.DataFrame:
    """Summary rows as (attention, acc_mean, acc_std, energy_uj_mean, energy_uj_std, target)."""
    records = [
        {
            "cell": f"c{i}",
            "dataset": "digits-dvs",
            "backbone": "demo_cnn",
            "attention": att,
            "coding": "direct",
            "T": 8,
            "seeds": 3,
            "acc_mean": acc,
            "acc_std": acc_std,
            "energy_uj_mean": uj,
            "energy_uj_std": uj_std,
            "target_acc": target,
            **const,
        }
        for i, (att, acc, acc_std, uj, uj_std, target) in enumerate(rows)
    ]
    return pd.DataFrame(records)


def _by_label(ax, label: str):
    return [a for a in [*ax.lines, *ax.collections] if a.get_label() == label]


# -- pareto_front ------------------------------------------------------------------------------
def test_pareto_front_known_table_with_ties_and_nan():
    table = pd.DataFrame(
        {
            "energy_uj_mean": [1.0, 2.0, 2.0, 3.0, 1.0, 5.0, 0.5, NAN],
            "acc_mean": [90.0, 95.0, 95.0, 94.0, 89.0, 96.0, 80.0, 99.0],
        },
        index=list("ABCDEFGH"),
    )
    # B and C tie exactly (both kept); D is beaten by B; E has A's energy but lower accuracy;
    # H has no energy, so it can neither be on the front nor push anything off it.
    expected = [True, True, True, False, False, True, True, False]
    front = pareto_front(table)
    assert front.dtype == bool
    assert list(front.index) == list("ABCDEFGH")
    assert front.tolist() == expected


def test_pareto_front_equal_energy_or_equal_accuracy():
    same_energy = pd.DataFrame({"energy_uj_mean": [1.0, 1.0], "acc_mean": [90.0, 91.0]})
    same_acc = pd.DataFrame({"energy_uj_mean": [1.0, 2.0], "acc_mean": [90.0, 90.0]})
    assert pareto_front(same_energy).tolist() == [False, True]
    assert pareto_front(same_acc).tolist() == [True, False]
    assert pareto_front(same_energy.iloc[:1]).tolist() == [True]


# -- pareto_figure -----------------------------------------------------------------------------
def test_pareto_figure_points_front_targets_and_log_scale():
    summary = _summary(
        [
            ("none", 95.0, 0.2, 1.0, 0.05, 96.0),
            ("TCSA", 96.0, 0.3, 0.1, 0.01, NAN),
            ("TA", 94.0, NAN, 0.01, NAN, NAN),
        ]
    )  # 2 decades of energy
    fig = pareto_figure(summary, "demo")
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    assert ax.get_xscale() == "log"
    assert ax.get_xlabel() == "Energy per sample (µJ)" and ax.get_ylabel() == "Test accuracy (%)"
    assert ax.get_title() == "demo"

    (cells,) = _by_label(ax, "Cells")
    assert cells.get_offsets().shape == (3, 2)
    (front,) = _by_label(ax, "Pareto front")
    assert list(ax.lines) == [front]  # no stray cap lines
    # "none" is beaten by TCSA (less energy, more accuracy); the front runs left to right.
    assert front.get_xdata().tolist() == [0.01, 0.1]
    assert front.get_ydata().tolist() == [94.0, 96.0]
    (target,) = _by_label(ax, "Paper target")
    assert target.get_offsets().tolist() == [[1.0, 96.0]]
    assert (target.get_facecolors()[:, 3] == 0).all()  # hollow

    # Error bars only where a std exists: two acc bars, two energy bars, none for "TA".
    bars = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert sorted(len(c.get_segments()) for c in bars) == [2, 2]
    assert [t.get_text() for t in ax.texts] == [
        "none / direct / T=8",
        "TCSA / direct / T=8",
        "TA / direct / T=8",
    ]


def test_pareto_figure_single_seed_single_cell_equal_energy():
    one = _summary([("TCSA", 96.0, NAN, 0.1, NAN, NAN)], seeds=1)
    ax = pareto_figure(one, "one").axes[0]
    assert not [c for c in ax.collections if isinstance(c, LineCollection)]  # NaN std: no bars
    assert not _by_label(ax, "Paper target")
    assert len(ax.texts) == 1 and ax.get_xscale() == "linear"
    assert _by_label(ax, "Pareto front")[0].get_xdata().tolist() == [0.1]

    flat = _summary([("none", 95.0, NAN, 0.1, NAN, NAN), ("TCSA", 96.0, NAN, 0.1, NAN, NAN)])
    ax = pareto_figure(flat, "flat").axes[0]
    assert ax.get_xscale() == "linear"
    assert _by_label(ax, "Pareto front")[0].get_ydata().tolist() == [96.0]


def test_pareto_figure_labels_name_varying_backbone():
    summary = pd.concat(
        [
            _summary([("TCSA", 96.0, NAN, 0.1, NAN, NAN)]),
            _summary([("TCSA", 97.0, NAN, 0.3, NAN, NAN)], backbone="resnet"),
        ]
    )
    ax = pareto_figure(summary.reset_index(drop=True), "mixed").axes[0]
    assert [t.get_text() for t in ax.texts] == [
        "demo_cnn / TCSA / direct / T=8",
        "resnet / TCSA / direct / T=8",
    ]


def test_pareto_figure_rejects_bad_input():
    with pytest.raises(ValueError, match="no rows"):
        pareto_figure(_summary([]).reindex(columns=_summary([("x", 1, 1, 1, 1, 1)]).columns), "t")
    with pytest.raises(ValueError, match="acc_mean, energy_uj_mean"):
        pareto_figure(
            _summary([("x", 1, 1, 1, 1, 1)]).drop(columns=["acc_mean", "energy_uj_mean"]), "t"
        )
    with pytest.raises(ValueError, match="none / direct / T=8"):
        pareto_figure(_summary([("none", NAN, NAN, 0.1, NAN, NAN)]), "t")
    with pytest.raises(ValueError, match="no rows"):
        pareto_front(pd.DataFrame(columns=["acc_mean", "energy_uj_mean"]))


# -- firing_rate_figure ------------------------------------------------------------------------
def _rates() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "label": ["none / direct"] * 3 + ["TCSA / direct"] * 4,
            "layer": ["lif1", "lif2", "lif3", "lif1", "attn.lif", "lif2", "lif3"],
            "rate": [0.2, 0.15, 0.1, 0.18, 0.3, 0.12, 0.08],
            "rate_std": [NAN] * 3 + [0.01, 0.02, 0.01, 0.01],
        }
    )


def test_firing_rate_figure_lines_per_label_layers_in_first_appearance_order():
    fig = firing_rate_figure(_rates(), "rates")
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["lif1", "lif2", "lif3", "attn.lif"]
    assert [line.get_label() for line in ax.lines] == ["none / direct", "TCSA / direct"]
    none, tcsa = ax.lines
    assert none.get_xdata().tolist() == [0, 1, 2]
    assert tcsa.get_xdata().tolist() == [0, 1, 2, 3]
    assert tcsa.get_ydata().tolist() == [0.18, 0.12, 0.08, 0.3]
    bars = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert len(bars) == 1 and len(bars[0].get_segments()) == 4  # only TCSA has stds
    assert ax.get_legend() is not None and ax.get_title() == "rates"


def test_firing_rate_figure_crowded_legend_goes_outside_and_std_is_optional():
    rates = pd.DataFrame({"label": [f"v{i}" for i in range(8)], "layer": "lif1", "rate": 0.1})
    fig = firing_rate_figure(rates, "many")
    assert len(fig.axes[0].lines) == 8
    assert fig.axes[0].get_legend() is None and len(fig.legends) == 1


def test_firing_rate_figure_rejects_bad_input():
    with pytest.raises(ValueError, match="layer, rate"):
        firing_rate_figure(_rates()[["label"]], "t")
    with pytest.raises(ValueError, match="no rows"):
        firing_rate_figure(_rates().iloc[:0], "t")
    with pytest.raises(ValueError, match="duplicate.*lif1"):
        firing_rate_figure(pd.concat([_rates(), _rates().iloc[:1]]), "t")


# -- training_curves_figure --------------------------------------------------------------------
def _histories() -> pd.DataFrame:
    rows = []
    for label, seeds in (("none", [0, 1]), ("TCSA", [0])):
        for seed in seeds:
            for epoch in (1, 2, 3):
                rows.append(
                    {
                        "label": label,
                        "seed": seed,
                        "epoch": epoch,
                        "train_loss": 1.0 / epoch + 0.1 * seed,
                        "test_loss": 1.0,
                        "test_acc": 0.5 + 0.1 * epoch + 0.02 * seed,
                    }
                )
    return pd.DataFrame(rows)


def test_training_curves_figure_mean_lines_and_bands():
    fig = training_curves_figure(_histories(), "curves")
    acc_ax, loss_ax = fig.axes
    for ax in (acc_ax, loss_ax):
        assert [line.get_label() for line in ax.lines] == ["none", "TCSA"]
        assert [line.get_xdata().tolist() for line in ax.lines] == [[1, 2, 3]] * 2
        # Band only for "none" (two seeds); one seed has no spread to show.
        assert len([c for c in ax.collections if isinstance(c, PolyCollection)]) == 1
    np.testing.assert_allclose(acc_ax.lines[0].get_ydata(), [61.0, 71.0, 81.0])
    np.testing.assert_allclose(acc_ax.lines[1].get_ydata(), [60.0, 70.0, 80.0])
    np.testing.assert_allclose(loss_ax.lines[0].get_ydata(), [1.05, 0.55, 1 / 3 + 0.05])
    assert acc_ax.get_ylabel() == "Test accuracy (%)" and loss_ax.get_ylabel() == "Train loss"
    assert fig.get_suptitle() == "curves"
    assert acc_ax.lines[0].get_color() == loss_ax.lines[0].get_color()


def test_training_curves_figure_rejects_bad_input():
    with pytest.raises(ValueError, match="train_loss, test_acc"):
        training_curves_figure(_histories().drop(columns=["train_loss", "test_acc"]), "t")
    with pytest.raises(ValueError, match="no rows"):
        training_curves_figure(_histories().iloc[:0], "t")
    with pytest.raises(ValueError, match="duplicate"):
        training_curves_figure(pd.concat([_histories(), _histories().iloc[:1]]), "t")


# -- save_figure -------------------------------------------------------------------------------
def test_save_figure_writes_both_formats_deterministically(tmp_path):
    summary = _summary([("none", 95.0, 0.2, 1.0, 0.05, 96.0), ("TCSA", 96.0, 0.3, 0.1, 0.01, NAN)])
    salt = matplotlib.rcParams["svg.hashsalt"]
    paths = save_figure(pareto_figure(summary, "demo"), tmp_path / "out" / "pareto_T=0.5")
    assert FIGURE_FORMATS == ("png", "svg")
    assert [p.name for p in paths] == ["pareto_T=0.5.png", "pareto_T=0.5.svg"]
    png, svg = paths
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert ET.fromstring(svg.read_bytes()).tag.endswith("svg")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [png.name, svg.name]
    assert matplotlib.rcParams["svg.hashsalt"] == salt  # nothing leaks into global state

    # Re-saving the same figure, and saving a freshly drawn one, give the same SVG bytes.
    fig = pareto_figure(summary, "demo")
    again = save_figure(fig, tmp_path / "a")[1].read_bytes()
    assert again == save_figure(fig, tmp_path / "b")[1].read_bytes()
    assert again == svg.read_bytes()


# -- diverged runs -----------------------------------------------------------------------------
def _with_status(summary: pd.DataFrame, statuses: list[str], diverged: list[int]) -> pd.DataFrame:
    """summary.csv's status / seeds / n_diverged columns (3 seeds per cell)."""
    return summary.assign(status=statuses, n_diverged=diverged, seeds=[3 - k for k in diverged])


def _note(fig: Figure) -> str:
    return fig.get_supxlabel().replace("\n", " ")


def test_pareto_figure_skips_a_fully_diverged_cell_and_says_so():
    summary = _with_status(
        _summary(
            [
                ("none", NAN, NAN, NAN, NAN, 96.0),
                ("TCSA", 96.0, 0.3, 0.1, 0.01, NAN),
                ("TA", 94.0, NAN, 0.01, NAN, NAN),
            ]
        ),
        ["diverged", "completed", "some_diverged"],
        [3, 0, 2],
    )
    fig = pareto_figure(summary, "demo")
    (ax,) = fig.axes
    (cells,) = _by_label(ax, "Cells")
    assert cells.get_offsets().tolist() == [[0.1, 96.0], [0.01, 94.0]]
    assert [t.get_text() for t in ax.texts] == [
        "TCSA / direct / T=8",
        "TA / direct / T=8 (2 diverged)",
    ]
    assert not _by_label(ax, "Paper target")  # the diverged cell's target has no energy
    note = _note(fig)
    assert "none / direct / T=8: all 3 seeds (no point)" in note
    assert "TA / direct / T=8: 2 of 3 seeds" in note and "TCSA" not in note


def test_pareto_figure_when_every_cell_diverged():
    summary = _with_status(
        _summary([("none", NAN, NAN, NAN, NAN, NAN), ("TCSA", NAN, NAN, NAN, NAN, 97.0)]),
        ["diverged", "diverged"],
        [3, 3],
    )
    fig = pareto_figure(summary, "demo")
    (ax,) = fig.axes
    assert not ax.axison and "Every cell diverged" in ax.texts[0].get_text()
    assert ax.get_title() == "demo" and "all 3 seeds" in _note(fig)
    # and without a status, a NaN accuracy is still an error, not a silent skip
    with pytest.raises(ValueError, match="no finite acc_mean"):
        pareto_figure(summary.drop(columns=["status", "n_diverged"]), "demo")


def test_no_note_without_diverged_runs():
    summary = _summary([("none", 95.0, 0.2, 1.0, 0.05, NAN)])
    assert diverged_note(summary) == ""
    assert diverged_note(_with_status(summary, ["completed"], [0])) == ""
    assert pareto_figure(summary, "t").get_supxlabel() == ""


def test_firing_rate_figure_with_note_and_when_every_run_diverged():
    note = "Diverged runs (training loss NaN or infinite), left out: TA: all 3 seeds (no point)."
    fig = firing_rate_figure(_rates(), "rates", note)
    assert _note(fig) == note and len(fig.axes[0].lines) == 2
    empty = firing_rate_figure(_rates().iloc[:0], "rates", note)
    assert "Every run diverged" in empty.axes[0].texts[0].get_text()
    with pytest.raises(ValueError, match="no rows"):  # no note: nothing explains the gap
        firing_rate_figure(_rates().iloc[:0], "rates")


def _histories_with_diverged() -> pd.DataFrame:
    """none: seeds 0, 1 completed and seed 2 diverged after epoch 2; TA: both seeds diverged."""
    rows = _histories().assign(status="completed")
    extra = [
        {
            "label": "none",
            "seed": 2,
            "epoch": e,
            "train_loss": 5.0,
            "test_loss": 1.0,
            "test_acc": 0.1,
            "status": "diverged",
        }
        for e in (1, 2)
    ]
    extra += [
        {
            "label": "TA",
            "seed": s,
            "epoch": 1,
            "train_loss": 9.0,
            "test_loss": 1.0,
            "test_acc": 0.2,
            "status": "diverged",
        }
        for s in (0, 1)
    ]
    return pd.concat([rows, pd.DataFrame(extra)], ignore_index=True)


def test_training_curves_draw_diverged_runs_apart_from_the_means():
    fig = training_curves_figure(_histories_with_diverged(), "curves", "note about TA")
    acc_ax, loss_ax = fig.axes
    labelled = [line.get_label() for line in acc_ax.lines if not line.get_label().startswith("_")]
    assert labelled == ["none", "TCSA", "TA (diverged)", DIVERGED_CURVE]
    # the means are those of the completed seeds only (the diverged 0.1 / 5.0 left out)
    np.testing.assert_allclose(acc_ax.lines[0].get_ydata(), [61.0, 71.0, 81.0])
    np.testing.assert_allclose(loss_ax.lines[0].get_ydata(), [1.05, 0.55, 1 / 3 + 0.05])
    dashed = [line for line in loss_ax.lines if line.get_linestyle() == "--"]
    assert [line.get_xdata().tolist() for line in dashed] == [[1, 2], [1], [1]]
    assert [line.get_ydata().tolist() for line in dashed] == [[5.0, 5.0], [9.0], [9.0]]
    crosses = [line for line in loss_ax.lines if line.get_marker() == "x"]
    assert [line.get_xdata().tolist() for line in crosses] == [[2], [1], [1]]
    assert dashed[0].get_color() == loss_ax.lines[0].get_color()  # the variant's colour
    # bands: none has two completed seeds, TCSA one, TA none
    assert len([c for c in loss_ax.collections if isinstance(c, PolyCollection)]) == 1
    assert _note(fig) == "note about TA"


def test_training_curves_when_no_epoch_completed():
    empty = _histories_with_diverged().iloc[:0]
    fig = training_curves_figure(empty, "curves", "every run diverged in epoch 1")
    assert "no curve to draw" in fig.axes[0].texts[0].get_text()
    with pytest.raises(ValueError, match="no rows"):
        training_curves_figure(empty, "curves")
