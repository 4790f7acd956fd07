"""The paper-shaped results table: long form, wide form, caption and its three renderings."""

from __future__ import annotations

import io
import math
import re

import pandas as pd
import pytest

from spikeattn.report.paper import (
    LONG_COLUMNS,
    diverged_of,
    paper_caption,
    paper_long,
    paper_sources,
    paper_wide,
    render_paper,
)

CONVENTIONS = "E_MAC = 4.6 pJ, E_AC = 0.9 pJ (45 nm); first layer 100% dense"
BACKBONE = "demo_cnn"
# (study, dataset, T, attention): per-seed accuracy (%) and energy (µJ) over seeds 0, 1, 2.
CELLS = {
    ("sa", "A", 4, "none"): ([96.12, 96.47, 95.77], [0.0400, 0.0410, 0.0420]),
    ("sa", "A", 4, "TCSA"): ([97.00, 97.10, 97.20], [0.0300, 0.0300, 0.0300]),
    ("sb", "B", 8, "none"): ([90.00, 91.00, 92.00], [0.0500, 0.0510, 0.0520]),
    ("sb", "B", 8, "TCSA"): ([93.00, 93.00, 93.00], [0.0200, 0.0210, 0.0220]),
}
COL_A, COL_B = f"A · {BACKBONE} · T=4", f"B · {BACKBONE} · T=8"


def _cid(dataset, backbone, attention, coding, T) -> str:
    return f"{dataset}__{backbone}__{attention}__{coding}__T{T}"


def _runs(cells=CELLS, backbone=BACKBONE, coding="direct", diverged=None) -> pd.DataFrame:
    """A runs frame as results.runs_frame makes it (only the columns paper.py reads matter).

    `diverged` maps a CELLS key to the seeds that diverged; with it the frame has a status
    column (without, it is a frame from before runs could diverge). A diverged run keeps
    finite garbage values here, so only its status can keep it out of the means."""
    rows = []
    for key, (accs, ujs) in cells.items():
        study, dataset, T, attention = key[:4]
        bb = key[4] if len(key) > 4 else backbone
        cod = key[5] if len(key) > 5 else coding
        for seed, (acc, uj) in enumerate(zip(accs, ujs)):
            row = {
                "study": study,
                "cell": _cid(dataset, bb, attention, cod, T),
                "dataset": dataset,
                "backbone": bb,
                "attention": attention,
                "coding": cod,
                "T": T,
                "seed": seed,
                "acc": acc,
                "best_acc": acc,
                "firing_rate": 0.1,
                "spikes": 100.0,
                "energy_uj": uj,
                "macs": 10,
                "sops": 20.0,
                "epochs": 3,
            }
            if diverged is not None:
                bad = seed in diverged.get(key, ())
                row.update(
                    status="diverged" if bad else "completed",
                    diverged_epoch=2.0 if bad else math.nan,
                )
                if bad:
                    row.update(acc=10.0, best_acc=10.0, energy_uj=99.0)
            rows.append(row)
    return pd.DataFrame(rows)


TARGETS = {
    "sa": [
        {
            "cell": {"attention": "TCSA"},
            "acc": 97.50,
            "energy_mj": 0.0123,
            "source": "Paper X (2023), table 2",
        }
    ],
    "sb": [],
}
STUDIES = {"sa": {"seeds": [0, 1, 2], "epochs": 6}, "sb": {"seeds": [0, 1, 2], "epochs": 5}}


@pytest.fixture
def long() -> pd.DataFrame:
    return paper_long(_runs(), TARGETS)


@pytest.fixture
def wide(long) -> pd.DataFrame:
    return paper_wide(long)


@pytest.fixture
def rendered(long, wide) -> dict[str, str]:
    caption = paper_caption(
        "Demo_paper: results", long, STUDIES, CONVENTIONS, paper_sources(TARGETS)
    )
    return render_paper("demo", wide, long, caption)


# -- long form ---------------------------------------------------------------------------------
def test_long_one_row_per_cell_with_targets_and_delta(long):
    assert tuple(long.columns) == LONG_COLUMNS
    assert list(zip(long["study"], long["row"], long["column"])) == [
        ("sa", "none", COL_A),
        ("sa", "TCSA", COL_A),
        ("sb", "none", COL_B),
        ("sb", "TCSA", COL_B),
    ]
    assert long["seeds"].tolist() == [3, 3, 3, 3]
    assert long["acc_mean"].tolist() == pytest.approx([96.12, 97.10, 91.00, 93.00])
    assert long["acc_std"].tolist() == pytest.approx([0.35, 0.10, 1.00, 0.00])
    assert long["energy_uj_mean"].tolist() == pytest.approx([0.041, 0.030, 0.051, 0.021])
    tcsa = long.iloc[1]
    assert tcsa["target_acc"] == 97.50
    assert tcsa["delta"] == pytest.approx(97.10 - 97.50)  # ours - paper
    assert tcsa["target_energy_uj"] == pytest.approx(12.3)  # mJ -> µJ
    others = long.drop(index=1)
    assert others[["target_acc", "delta", "target_energy_uj"]].isna().all().all()


def test_long_refuses_empty_runs():
    with pytest.raises(ValueError, match="no runs"):
        paper_long(_runs().iloc[:0], TARGETS)


def test_target_matching_uses_every_given_coordinate():
    targets = {
        "sa": [{"cell": {"attention": "TCSA", "T": 8}, "acc": 50.0}],  # no such cell
        "sb": [{"cell": {"attention": "none"}, "acc": 90.25}],
    }
    long = paper_long(_runs(), targets)
    assert long["target_acc"].isna().tolist() == [True, True, False, True]
    assert long.loc[2, "delta"] == pytest.approx(0.75)


# -- wide form ---------------------------------------------------------------------------------
def test_wide_column_groups_paper_and_delta_only_where_targeted(wide):
    assert list(wide.columns) == [
        (COL_A, "Paper (%)"),
        (COL_A, "Ours (%)"),
        (COL_A, "Δ (pp)"),
        (COL_A, "Energy (µJ)"),
        (COL_A, "Paper (µJ)"),
        (COL_B, "Ours (%)"),
        (COL_B, "Energy (µJ)"),
    ]
    assert list(wide.index) == ["none", "TCSA"]  # one row per cell, across both studies
    assert wide.loc["none", (COL_A, "Ours (%)")] == "96.12 ± 0.35 (3)"
    assert wide.loc["TCSA", (COL_A, "Ours (%)")] == "97.10 ± 0.10 (3)"
    assert wide.loc["none", (COL_B, "Ours (%)")] == "91.00 ± 1.00 (3)"
    assert wide.loc["TCSA", (COL_B, "Ours (%)")] == "93.00 ± 0.00 (3)"
    # Paper and Δ: filled where the cell has a target, empty (not "nan") where it has none
    assert wide.loc["TCSA", (COL_A, "Paper (%)")] == "97.50"
    assert wide.loc["TCSA", (COL_A, "Δ (pp)")] == "-0.40"
    assert wide.loc["none", (COL_A, "Paper (%)")] == ""
    assert wide.loc["none", (COL_A, "Δ (pp)")] == ""
    assert wide.loc["TCSA", (COL_A, "Paper (µJ)")] == "12.3"
    assert wide.loc["none", (COL_A, "Paper (µJ)")] == ""
    # energy: one number of decimals for the whole table (3 significant figures of 0.021)
    assert wide.loc["none", (COL_A, "Energy (µJ)")] == "0.0410 ± 0.0010"
    assert wide.loc["TCSA", (COL_B, "Energy (µJ)")] == "0.0210 ± 0.0010"
    assert not wide.isin(["nan", "NaN"]).any().any()


def test_wide_delta_has_a_sign_either_way():
    targets = {
        "sa": [{"cell": {"attention": "TCSA"}, "acc": 96.5}],
        "sb": [{"cell": {"attention": "none"}, "acc": 92.25}],
    }
    wide = paper_wide(paper_long(_runs(), targets))
    assert wide.loc["TCSA", (COL_A, "Δ (pp)")] == "+0.60"
    assert wide.loc["none", (COL_B, "Δ (pp)")] == "-1.25"
    assert (COL_A, "Paper (µJ)") not in wide.columns  # no target reports energy


def test_wide_without_any_target_has_no_paper_columns():
    wide = paper_wide(paper_long(_runs(), {}))
    assert {q for _, q in wide.columns} == {"Ours (%)", "Energy (µJ)"}


def test_wide_row_missing_from_a_group_is_empty_not_nan():
    cells = {k: v for k, v in CELLS.items() if k != ("sb", "B", 8, "TCSA")}
    wide = paper_wide(paper_long(_runs(cells), TARGETS))
    assert list(wide.index) == ["none", "TCSA"]
    assert wide.loc["TCSA", (COL_B, "Ours (%)")] == ""
    assert wide.loc["TCSA", (COL_B, "Energy (µJ)")] == ""


def test_single_seed_shows_dash_for_std():
    cells = {k: ([v[0][0]], [v[1][0]]) for k, v in CELLS.items()}
    wide = paper_wide(paper_long(_runs(cells), TARGETS))
    assert wide.loc["none", (COL_A, "Ours (%)")] == "96.12 ± – (1)"
    assert wide.loc["TCSA", (COL_A, "Energy (µJ)")] == "0.0300 ± –"


def test_backbone_names_rows_only_when_a_group_has_two():
    # different backbones in different (dataset, T) groups: still one backbone per group
    split = {(*k, "net_a" if k[1] == "A" else "net_b"): v for k, v in CELLS.items()}
    long = paper_long(_runs(split), {})
    assert set(long["row"]) == {"none", "TCSA"}
    assert list(dict.fromkeys(long["column"])) == ["A · net_a · T=4", "B · net_b · T=8"]
    # two backbones inside the A, T=4 group: the backbone moves into the row label
    two = dict(CELLS)
    two[("sa", "A", 4, "none", "big_net")] = ([90.0, 91.0, 92.0], [1.0, 1.0, 1.0])
    long = paper_long(_runs(two), {})
    assert list(long["row"]) == [
        "demo_cnn / none",
        "demo_cnn / TCSA",
        "demo_cnn / none",
        "demo_cnn / TCSA",
        "big_net / none",
    ]
    assert list(dict.fromkeys(long["column"])) == ["A · T=4", "B · T=8"]
    wide = paper_wide(long)
    assert list(wide.index) == ["demo_cnn / none", "demo_cnn / TCSA", "big_net / none"]
    assert wide.loc["big_net / none", ("A · T=4", "Ours (%)")] == "91.00 ± 1.00 (3)"
    assert wide.loc["big_net / none", ("B · T=8", "Ours (%)")] == ""


def test_coding_names_rows_only_when_it_varies():
    cells = dict(CELLS)
    cells[("sa", "A", 4, "none", BACKBONE, "gac")] = ([97.0, 97.0, 97.0], [0.1, 0.1, 0.1])
    long = paper_long(_runs(cells), {})
    assert list(long["row"]) == [
        "none / direct",
        "TCSA / direct",
        "none / direct",
        "TCSA / direct",
        "none / gac",
    ]


# -- caption -----------------------------------------------------------------------------------
def test_caption_states_studies_sources_and_conventions(long):
    text = paper_caption(
        "Demo", long, STUDIES, CONVENTIONS + ".", ["Paper X", "Paper Y", "Paper X"]
    )
    assert text.startswith("Demo. Ours: final test accuracy, mean ± sample std over seeds")
    assert "sa: A T=4; seeds 0, 1, 2; 6 epochs." in text
    assert "sb: B T=8; seeds 0, 1, 2; 5 epochs." in text
    assert "Targets from: Paper X; Paper Y." in text  # each source once, in order
    assert text.endswith(f"Energy conventions: {CONVENTIONS}.")  # no doubled full stop
    bare = paper_caption("Demo", long, STUDIES, "", [])
    assert "Targets from" not in bare and "Energy conventions" not in bare


def test_paper_sources_lists_every_target_with_a_source():
    targets = {
        "a": [{"cell": {}, "acc": 1.0, "source": "S1"}, {"cell": {}, "acc": 2.0}],
        "b": [{"cell": {}, "acc": 3.0, "source": "S2"}],
    }
    assert paper_sources(targets) == ["S1", "S2"]
    assert paper_sources({}) == []


# -- rendering ---------------------------------------------------------------------------------
def test_markdown_header_table_and_caption(rendered):
    md = rendered["results.md"]
    assert md.startswith("# demo: results\n\n| Cell ")
    header = md.splitlines()[2]
    assert f"{COL_A}: Paper (%)" in header and f"{COL_B}: Energy (µJ)" in header
    tcsa = next(line for line in md.splitlines() if line.startswith("| TCSA"))
    # strings are printed as they are: no "97.5" for "97.50", no lost sign on Δ
    cells = [c.strip() for c in tcsa.strip("|").split("|")]
    assert cells == [
        "TCSA",
        "97.50",
        "97.10 ± 0.10 (3)",
        "-0.40",
        "0.0300 ± 0.0000",
        "12.3",
        "93.00 ± 0.00 (3)",
        "0.0210 ± 0.0010",
    ]
    assert md.rstrip().endswith(f"Energy conventions: {CONVENTIONS}.")
    assert "Paper X (2023), table 2" in md


def test_markdown_keeps_plus_sign_and_trailing_zeros():
    targets = {"sa": [{"cell": {"attention": "TCSA"}, "acc": 96.50}]}
    long = paper_long(_runs(), targets)
    md = render_paper("demo", paper_wide(long), long, "Caption.")["results.md"]
    tcsa = next(line for line in md.splitlines() if line.startswith("| TCSA"))
    cells = [c.strip() for c in tcsa.strip("|").split("|")]
    assert cells[1:4] == ["96.50", "97.10 ± 0.10 (3)", "+0.60"]


def test_latex_booktabs_multicolumn_label_and_escaping(rendered):
    tex = rendered["results.tex"]
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex
    assert r"\label{tab:demo-results}" in tex
    assert r"\multicolumn{5}{c}{A · demo\_cnn · T=4}" in tex
    assert r"\multicolumn{2}{c}{B · demo\_cnn · T=8}" in tex
    assert r"\begin{tabular}{lrrrrrrr}" in tex
    assert r"97.10 $\pm$ 0.10 (3)" in tex and "& -0.40 &" in tex
    assert r"Paper (\%)" in tex and r"Energy ($\mu$J)" in tex and r"$\Delta$ (pp)" in tex
    assert r"\caption{Demo\_paper: results." in tex and r"E\_MAC" in tex and r"100\% dense" in tex
    # every % and _ is escaped (the label has neither); no raw Unicode pdflatex rejects
    assert re.findall(r"(?<!\\)[%_]", tex) == []
    assert not set(tex) & {"±", "µ", "Δ", "−", "–"}


def test_csv_is_the_long_table_and_round_trips(rendered, long):
    back = pd.read_csv(io.StringIO(rendered["results.csv"]))
    assert tuple(back.columns) == LONG_COLUMNS
    pd.testing.assert_frame_equal(back, long, check_dtype=False)
    assert "NaN" in rendered["results.csv"]
    assert math.isnan(back.loc[0, "target_acc"]) and back.loc[1, "target_energy_uj"] == 12.3


# -- diverged runs -----------------------------------------------------------------------------
NAN_WORD = re.compile(r"\bnan\b", re.IGNORECASE)
TCSA_A, NONE_B = ("sa", "A", 4, "TCSA"), ("sb", "B", 8, "none")


def test_long_leaves_out_a_diverged_seed_and_counts_it():
    long = paper_long(_runs(diverged={TCSA_A: {1}}), TARGETS)
    tcsa = long.iloc[1]
    assert (tcsa["status"], tcsa["seeds"], tcsa["n_diverged"]) == ("some_diverged", 2, 1)
    assert tcsa["acc_mean"] == pytest.approx(97.10)  # (97.00 + 97.20) / 2, not the garbage 10
    assert tcsa["acc_std"] == pytest.approx(0.1414213, rel=1e-6)
    assert tcsa["energy_uj_mean"] == pytest.approx(0.030)
    assert tcsa["delta"] == pytest.approx(97.10 - 97.50)
    others = long.drop(index=1)
    assert set(others["status"]) == {"completed"} and set(others["n_diverged"]) == {0}
    wide = paper_wide(long)
    assert wide.loc["TCSA", (COL_A, "Ours (%)")] == "97.10 ± 0.14 (2, 1 diverged)"
    assert wide.loc["TCSA", (COL_A, "Energy (µJ)")] == "0.0300 ± 0.0000"
    assert wide.loc["none", (COL_A, "Ours (%)")] == "96.12 ± 0.35 (3)"


def test_fully_diverged_cell_reads_diverged_in_every_rendering():
    targets = {**TARGETS, "sb": [{"cell": {"attention": "none"}, "acc": 90.0, "source": "Y"}]}
    runs = _runs(diverged={NONE_B: {0, 1, 2}, TCSA_A: {2}})
    long = paper_long(runs, targets)
    none_b = long.iloc[2]
    assert (none_b["status"], none_b["seeds"], none_b["n_diverged"]) == ("diverged", 0, 3)
    for column in ("acc_mean", "acc_std", "delta", "energy_uj_mean", "energy_uj_std"):
        assert math.isnan(none_b[column]), column
    assert none_b["target_acc"] == 90.0  # the paper's number is still shown
    wide = paper_wide(long)
    assert wide.loc["none", (COL_B, "Ours (%)")] == "diverged (all 3)"
    assert wide.loc["none", (COL_B, "Energy (µJ)")] == "diverged"
    assert wide.loc["none", (COL_B, "Paper (%)")] == "90.00"
    assert wide.loc["none", (COL_B, "Δ (pp)")] == ""
    assert not wide.map(lambda v: bool(NAN_WORD.search(v))).any().any()

    caption = paper_caption("Demo", long, STUDIES, CONVENTIONS, [], diverged_of(runs))
    assert "4 runs diverged (training loss NaN or infinite) and are left out" in caption
    assert f"sb none ({COL_B}) seed 0 (epoch 2)" in caption
    assert f"sa TCSA ({COL_A}) seed 2 (epoch 2)" in caption
    out = render_paper("demo", wide, long, caption)
    md = out["results.md"]
    rows = [line for line in md.splitlines() if line.startswith("| none")]
    assert "diverged (all 3)" in rows[0] and not NAN_WORD.search(rows[0])
    assert "97.05 ± 0.07 (2, 1 diverged)" in md  # seeds 0 and 1 of TCSA in A
    tex = out["results.tex"]
    assert "diverged (all 3)" in tex
    body = tex[tex.index(r"\begin{tabular}") : tex.index(r"\end{tabular}")]
    assert not NAN_WORD.search(body)
    csv = pd.read_csv(io.StringIO(out["results.csv"]))
    assert tuple(csv.columns) == LONG_COLUMNS
    assert csv["status"].tolist() == ["completed", "some_diverged", "diverged", "completed"]
    assert csv["n_diverged"].tolist() == [0, 1, 3, 0] and csv["seeds"].tolist() == [3, 2, 0, 3]


def test_caption_without_the_run_list_still_explains_the_counts():
    long = paper_long(_runs(diverged={TCSA_A: {1}}), TARGETS)
    text = paper_caption("Demo", long, STUDIES, CONVENTIONS)
    assert "1 run diverged" in text and "'(n, k diverged)'" in text
    plain = paper_caption("Demo", paper_long(_runs(diverged={}), TARGETS), STUDIES, CONVENTIONS)
    assert "diverged" not in plain
    assert diverged_of(_runs()) == []  # a runs frame from before runs could diverge


def test_runs_with_status_but_no_divergence_match_old_frames():
    pd.testing.assert_frame_equal(
        paper_long(_runs(diverged={}), TARGETS).drop(columns=["status", "n_diverged"]),
        paper_long(_runs(), TARGETS).drop(columns=["status", "n_diverged"]),
    )
    assert set(paper_long(_runs(), TARGETS)["status"]) == {"completed"}
