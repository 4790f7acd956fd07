"""ablation_table and its rendering, on a small hand-built runs frame."""

from __future__ import annotations

import io
import math
import re

import numpy as np
import pandas as pd
import pytest

from spikeattn.report.ablation import (
    ABLATION_COLUMNS,
    ablation_caption,
    ablation_human,
    ablation_table,
    render_ablation,
    vanilla_twin,
)
from spikeattn.report.stats import fieller_ratio, holm, welch


def _cid(dataset: str, backbone: str, attention: str, coding: str, T: int) -> str:
    return f"{dataset}__{backbone}__{attention}__{coding}__T{T}"


def _cell_runs(
    study, dataset, backbone, attention, coding, T, acc, spikes, energy, seeds=None
) -> list[dict]:
    seeds = list(range(len(acc))) if seeds is None else seeds
    cid = _cid(dataset, backbone, attention, coding, T)
    return [
        {
            "study": study,
            "cell": cid,
            "dataset": dataset,
            "backbone": backbone,
            "attention": attention,
            "coding": coding,
            "T": T,
            "seed": s,
            "acc": a,
            "spikes": sp,
            "energy_uj": e,
            "firing_rate": sp / 1e4,
        }
        for s, a, sp, e in zip(seeds, acc, spikes, energy)
    ]


G = ("gesture", "demo_cnn", 8)  # study s1
C = ("cifar10-dvs", "vgg_11", 10)  # study s2
S1 = {  # (attention, coding): (acc, spikes, energy) over seeds 0, 1, 2
    ("TCSA", "direct"): ([95.0, 96.0, 94.0], [150.0, 160.0, 140.0], [3.0, 3.2, 2.8]),
    ("none", "direct"): ([90.0, 91.0, 89.0], [1000.0, 1100.0, 900.0], [10.0, 11.0, 9.0]),
    ("none", "gac"): ([92.0, 93.0, 91.0], [500.0, 510.0, 490.0], [5.0, 5.0, 5.0]),
    ("TA", "direct"): ([90.5, 89.0, 91.5], [800.0, 820.0, 780.0], [8.0, 8.0, 8.0]),
}
S2 = {
    ("none", "direct"): ([70.0, 70.1, 69.9], [400.0, 410.0, 390.0], [4.0, 4.0, 4.0]),
    ("SMA+AZO", "direct"): ([80.0, 80.1, 79.9], [200.0, 205.0, 195.0], [1.0, 1.0, 1.0]),
}


@pytest.fixture
def runs() -> pd.DataFrame:
    rows = []
    for (att, cod), (acc, sp, en) in S1.items():  # a variant first: order is first appearance
        rows += _cell_runs("s1", *G[:2], att, cod, G[2], acc, sp, en)
    for (att, cod), (acc, sp, en) in S2.items():
        rows += _cell_runs("s2", *C[:2], att, cod, C[2], acc, sp, en)
    # s3: no vanilla cell; its TA cell has the same id as s1's TA, but twins never cross studies
    rows += _cell_runs(
        "s3", *G[:2], "TA", "direct", G[2], [91.0, 92.0, 93.0], [1.0, 2.0, 3.0], [1.0, 1.0, 1.0]
    )
    # s4: two seeds only
    rows += _cell_runs("s4", *G[:2], "none", "direct", G[2], [90.0, 91.0], [10.0, 12.0], [2.0, 2.0])
    rows += _cell_runs("s4", *G[:2], "CA", "direct", G[2], [93.0, 94.0], [5.0, 7.0], [1.0, 1.0])
    return pd.DataFrame(rows)


@pytest.fixture
def table(runs) -> pd.DataFrame:
    return ablation_table(runs)


def _row(table: pd.DataFrame, study: str, attention: str, coding: str = "direct") -> pd.Series:
    hit = table[(table.study == study) & (table.attention == attention) & (table.coding == coding)]
    assert len(hit) == 1
    return hit.iloc[0]


def test_rows_twins_and_order(table):
    assert tuple(table.columns) == ABLATION_COLUMNS
    assert list(zip(table.study, table.attention, table.coding)) == [
        ("s1", "TCSA", "direct"),
        ("s1", "none", "gac"),
        ("s1", "TA", "direct"),
        ("s2", "SMA+AZO", "direct"),
        ("s4", "CA", "direct"),
    ]
    assert set(table.twin[table.study == "s1"]) == {_cid(*G[:2], "none", "direct", G[2])}
    assert _row(table, "s2", "SMA+AZO")["twin"] == _cid(*C[:2], "none", "direct", C[2])
    assert "s3" not in set(table.study)  # no vanilla cell: no rows, not an error


def test_gac_is_compared_with_direct_coding(table):
    gac = _row(table, "s1", "none", "gac")
    assert gac["twin"] == _cid(*G[:2], "none", "direct", G[2])
    assert gac["acc_delta"] == pytest.approx(2.0)
    assert gac["spike_reduction_pct"] == pytest.approx(50.0)
    assert gac["energy_ratio"] == pytest.approx(2.0)


def test_deltas_spikes_and_energy(table):
    r = _row(table, "s1", "TCSA")
    assert (r["seeds"], r["twin_seeds"], r["seeds_matched"]) == (3, 3, True)
    assert (r["acc_mean"], r["twin_acc_mean"]) == (pytest.approx(95.0), pytest.approx(90.0))
    assert r["acc_delta"] == pytest.approx(5.0)
    ref = welch(S1[("TCSA", "direct")][0], S1[("none", "direct")][0])
    assert (r["acc_delta_ci_low"], r["acc_delta_ci_high"], r["p_value"]) == (
        pytest.approx(ref.ci_low),
        pytest.approx(ref.ci_high),
        pytest.approx(ref.p_value),
    )
    assert r["spikes_mean"] == pytest.approx(150.0)
    assert r["twin_spikes_mean"] == pytest.approx(1000.0)
    assert r["spike_reduction_pct"] == pytest.approx(85.0)
    spikes_p = welch(S1[("TCSA", "direct")][1], S1[("none", "direct")][1]).p_value
    assert r["spike_reduction_p"] == pytest.approx(spikes_p)
    # reduction = 100 (1 - ratio): Fieller's upper ratio is the lower reduction
    ratio = fieller_ratio(S1[("TCSA", "direct")][1], S1[("none", "direct")][1])
    assert r["spike_reduction_ci_low"] == pytest.approx(100 * (1 - ratio.high))
    assert r["spike_reduction_ci_high"] == pytest.approx(100 * (1 - ratio.low))
    assert r["spike_reduction_ci_low"] < 85.0 < r["spike_reduction_ci_high"]
    assert r["energy_uj_mean"] == pytest.approx(3.0)
    assert r["twin_energy_uj_mean"] == pytest.approx(10.0)
    assert r["energy_ratio"] == pytest.approx(10.0 / 3.0)
    assert r["T"] == 8 and isinstance(r["T"], (int, np.integer))


def test_holm_within_study_only(table):
    s1 = table[table.study == "s1"]
    assert list(s1.p_adjusted) == pytest.approx(holm(list(s1.p_value)))
    assert (s1.p_adjusted >= s1.p_value).all() and (s1.p_adjusted > s1.p_value).any()
    s2 = _row(table, "s2", "SMA+AZO")  # alone in its family: not inflated by s1's 3 tests
    assert s2["p_adjusted"] == s2["p_value"]
    pooled = holm(list(table.p_value))
    assert s2["p_adjusted"] < pooled[3]


def test_significant_flags(table):
    assert str(table["significant"].dtype) == "boolean"
    assert bool(_row(table, "s1", "TCSA")["significant"]) is True
    assert bool(_row(table, "s1", "TA")["significant"]) is False
    assert bool(_row(table, "s2", "SMA+AZO")["significant"]) is True


def test_alpha_changes_verdict_not_numbers(runs, table):
    strict = ablation_table(runs, alpha=1e-4)
    assert list(strict.p_value) == pytest.approx(list(table.p_value), nan_ok=True)
    assert bool(_row(strict, "s1", "TCSA")["significant"]) is False
    wide = _row(strict, "s1", "TCSA")
    assert wide["acc_delta_ci_high"] - wide["acc_delta_ci_low"] > (
        _row(table, "s1", "TCSA")["acc_delta_ci_high"]
        - _row(table, "s1", "TCSA")["acc_delta_ci_low"]
    )


def test_two_seed_study_is_not_tested(table):
    r = _row(table, "s4", "CA")
    assert r["acc_delta"] == pytest.approx(3.0) and r["seeds"] == 2
    for col in (
        "p_value",
        "p_adjusted",
        "acc_delta_ci_low",
        "acc_delta_ci_high",
        "spike_reduction_p",
        "spike_reduction_ci_low",
        "spike_reduction_ci_high",
        "spike_reduction_p_adjusted",
    ):
        assert math.isnan(r[col])
    assert pd.isna(r["significant"]) and pd.isna(r["spikes_significant"])
    human = ablation_human(table)
    row = human.iloc[-1]
    assert row["p (adj.)"] == "n/a (2 seeds < 3)"
    assert row["Significant"] == "n/a"
    assert row["Acc. Δ (pp)"] == "+3.00 [n/a]"
    assert (row["Spikes -%"], row["Spikes -% CI"]) == ("45.5", "n/a")  # 1 - 6/11
    assert (row["Spikes p (adj.)"], row["Spikes sig."]) == ("n/a (2 seeds < 3)", "n/a")
    assert (
        ablation_human(
            ablation_table(
                pd.DataFrame(
                    _cell_runs("x", *G[:2], "none", "direct", 8, [1.0, 2.0], [1.0, 1.0], [1.0, 1.0])
                    + _cell_runs("x", *G[:2], "TA", "direct", 8, [1.0, 2.0], [1.0, 1.0], [1.0, 1.0])
                )
            ),
            min_seeds=5,
        ).iloc[0]["p (adj.)"]
        == "n/a (2 seeds < 5)"
    )


def test_spike_p_values_are_holm_adjusted_as_their_own_family(table):
    s1 = table[table.study == "s1"]
    assert list(s1.spike_reduction_p_adjusted) == pytest.approx(holm(list(s1.spike_reduction_p)))
    # not pooled with the accuracy p-values: 3 spike tests in s1, not 6
    raw = list(s1.spike_reduction_p)
    assert s1.spike_reduction_p_adjusted.iloc[0] == pytest.approx(3 * min(raw))
    s2 = _row(table, "s2", "SMA+AZO")
    assert s2["spike_reduction_p_adjusted"] == s2["spike_reduction_p"]
    assert str(table["spikes_significant"].dtype) == "boolean"
    # GAC: 50% fewer spikes is significant while its +2 pp accuracy is not
    gac = _row(table, "s1", "none", "gac")
    assert bool(gac["spikes_significant"]) is True and bool(gac["significant"]) is False
    assert bool(_row(table, "s1", "TA")["spikes_significant"]) is False
    human = ablation_human(table)
    assert list(human["Spikes sig."]) == ["yes", "yes", "no", "yes", "n/a"]
    assert list(human["Spikes -% CI"][:3]) == [
        f"[{r['spike_reduction_ci_low']:.1f}, {r['spike_reduction_ci_high']:.1f}]"
        for _, r in s1.iterrows()
    ]
    assert human["Spikes -% CI"].iloc[2].startswith("[-")  # TA's interval includes 0


def test_spike_interval_unbounded_is_said():
    vanilla = _cell_runs("u", *G[:2], "none", "direct", 8, [1.0] * 3, [-1.0, 1.0, 2.0], [1.0] * 3)
    variant = _cell_runs("u", *G[:2], "TA", "direct", 8, [1.0] * 3, [1.0, 2.0, 3.0], [1.0] * 3)
    table = ablation_table(pd.DataFrame(vanilla + variant))
    r = table.iloc[0]
    assert math.isnan(r["spike_reduction_ci_low"]) and not math.isnan(r["spike_reduction_p"])
    assert ablation_human(table).iloc[0]["Spikes -% CI"] == "unbounded"


def test_correction_none_and_unknown(runs):
    raw = ablation_table(runs, correction="none")
    assert list(raw.p_adjusted) == pytest.approx(list(raw.p_value), nan_ok=True)
    assert list(raw.spike_reduction_p_adjusted) == pytest.approx(
        list(raw.spike_reduction_p), nan_ok=True
    )
    with pytest.raises(ValueError, match="holm, none"):
        ablation_table(runs, correction="bonferroni")


def test_seeds_matched_by_value_but_unpaired():
    vanilla = _cell_runs(
        "m", *G[:2], "none", "direct", 8, [90.0, 91.0, 89.0, 99.0, 99.5], [9.0] * 5, [1.0] * 5
    )
    variant = _cell_runs("m", *G[:2], "TA", "direct", 8, [92.0, 91.5, 93.0], [8.0] * 3, [1.0] * 3)
    other = _cell_runs(
        "m", *G[:2], "CA", "direct", 8, [92.0, 91.5, 93.0], [8.0] * 3, [1.0] * 3, seeds=[7, 8, 9]
    )
    table = ablation_table(pd.DataFrame(vanilla + variant + other))
    ta, ca = _row(table, "m", "TA"), _row(table, "m", "CA")
    assert (ta["seeds"], ta["twin_seeds"], ta["seeds_matched"]) == (3, 3, True)
    assert ta["twin_acc_mean"] == pytest.approx(90.0)  # seeds 3 and 4 dropped
    assert ta["p_value"] == pytest.approx(welch([92.0, 91.5, 93.0], [90.0, 91.0, 89.0]).p_value)
    assert (ca["seeds"], ca["twin_seeds"], ca["seeds_matched"]) == (3, 5, False)
    assert ca["twin_acc_mean"] == pytest.approx(np.mean([90.0, 91.0, 89.0, 99.0, 99.5]))


def test_vanilla_twin_direct():
    cells = pd.DataFrame(
        _cell_runs("s", "d", "b", "none", "direct", 4, [1.0], [1.0], [1.0])
        + _cell_runs("s", "d", "b", "none", "direct", 8, [1.0], [1.0], [1.0])
        + _cell_runs("s", "d", "b", "TA", "direct", 8, [1.0], [1.0], [1.0])
    )
    ta = cells.iloc[2]
    assert vanilla_twin(ta, cells) == "d__b__none__direct__T8"  # same T, not T4
    assert vanilla_twin(cells.iloc[1], cells) is None  # vanilla itself
    assert vanilla_twin({**ta.to_dict(), "backbone": "other"}, cells) is None
    assert vanilla_twin({**ta.to_dict(), "study": "t"}, cells) is None


def test_input_errors_name_the_study(runs):
    with pytest.raises(ValueError, match="empty"):
        ablation_table(runs.iloc[0:0])
    with pytest.raises(ValueError, match=r"'s1'.*energy_uj"):
        ablation_table(runs.drop(columns="energy_uj"))
    bad = runs.copy()
    bad.loc[0, "spikes"] = math.nan
    with pytest.raises(ValueError, match="'s1'.*non-finite"):
        ablation_table(bad)
    with pytest.raises(ValueError, match="more than once"):
        ablation_table(pd.concat([runs, runs.iloc[[0]]]))


def test_human_formatting(table):
    human = ablation_human(table)
    assert "Study" in human.columns and list(human.columns[1:3]) == ["Variant", "vs"]
    tcsa = human.iloc[0]
    assert re.fullmatch(r"\+5\.00 \[\+\d+\.\d\d, \+\d+\.\d\d\]", tcsa["Acc. Δ (pp)"])
    assert tcsa["Spikes -%"] == "85.0" and tcsa["Energy ratio"] == "3.33×"
    assert tcsa["Seeds"] == "3 vs 3" and tcsa["Significant"] == "yes"
    assert re.fullmatch(r"0\.\d{3}", tcsa["p (adj.)"])
    assert "TCSA" in tcsa["Variant"] and "none / direct" in tcsa["vs"]
    ta = human.iloc[2]
    assert re.fullmatch(r"\+0\.33 \[-\d+\.\d\d, \+\d+\.\d\d\]", ta["Acc. Δ (pp)"])
    assert ta["Significant"] == "no"
    assert human.iloc[3]["p (adj.)"] == "<0.001"


def test_caption_states_the_method(table):
    text = ablation_caption(table, 0.05, 3, "holm")
    for needle in (
        "vanilla twin",
        "attention none and direct coding",
        "two-sided Welch",
        "95% Welch confidence interval",
        "Holm",
        "within each study",
        "0.05",
        "fewer than 3 seeds",
        "Spikes -%",
        "95% Fieller confidence interval",
        "Spikes p: two-sided Welch",
        "as a family of its own",
        "Energy ratio",
    ):
        assert needle in text
    assert "not adjusted" in ablation_caption(table, 0.01, 5, "none")
    assert "99%" in ablation_caption(table, 0.01, 5, "none")


def test_render(table):
    text = ablation_caption(table, 0.05, 3, "holm")
    out = render_ablation("demo", table, text)
    assert set(out) == {"ablation.md", "ablation.tex", "ablation.csv"}
    md, tex = out["ablation.md"], out["ablation.tex"]
    assert md.startswith("# demo: ablations\n")
    assert "| Study" in md and "Variant" in md and "Acc. Δ (pp)" in md and text in md
    # formatted strings kept verbatim; the spike interval, p and verdict between the two
    assert re.search(r"\|\s+85\.0 \|\s+\[79\.4, 88\.7\] \|\s+0\.013 \|\s+yes \|\s+3\.33× \|", md)
    assert r"\toprule" in tex and r"\bottomrule" in tex and r"\label{tab:demo-ablation}" in tex
    assert "demo\\_cnn" in tex and "$\\Delta$" in tex and "$<$0.001" in tex
    assert not re.search(r"(?<!\\)[%_]", tex)  # data cells, headers and caption all escaped
    csv = pd.read_csv(io.StringIO(out["ablation.csv"]))
    assert tuple(csv.columns) == ABLATION_COLUMNS and len(csv) == len(table)
    assert csv["p_value"].isna().sum() == 1
    assert "NaN" in out["ablation.csv"]


def test_render_empty_table(runs):
    empty = ablation_table(runs[runs.study == "s3"])
    assert empty.empty and tuple(empty.columns) == ABLATION_COLUMNS
    out = render_ablation("s3", empty, ablation_caption(empty, 0.05, 3, "holm"))
    assert out["ablation.md"].startswith("# s3: ablations\n")
    md = out["ablation.md"]
    assert "has a vanilla twin" in md and "nothing to compare" in md
    assert "nothing to compare" in out["ablation.tex"]
    assert r"\label{tab:s3-ablation}" in out["ablation.tex"]
    assert out["ablation.csv"].strip() == ",".join(ABLATION_COLUMNS)


# -- diverged runs -----------------------------------------------------------------------------
NAN_WORD = re.compile(r"\bnan\b", re.IGNORECASE)


def _with_status(rows: list[dict], diverged_seeds=()) -> list[dict]:
    """Mark runs diverged as runs_frame does: status 'diverged' and NaN values."""
    out = []
    for row in rows:
        bad = row["seed"] in diverged_seeds
        out.append(
            {
                **row,
                "status": "diverged" if bad else "completed",
                **({"acc": math.nan, "spikes": math.nan, "energy_uj": math.nan} if bad else {}),
            }
        )
    return out


def _diverged_study(vanilla_diverged=(), variant_diverged=(), other_diverged=()):
    """Study d: vanilla twin, TCSA and TA over seeds 0-3, with the given seeds diverged."""
    vanilla = _cell_runs(
        "d",
        *G[:2],
        "none",
        "direct",
        8,
        [90.0, 91.0, 89.0, 90.5],
        [1000.0, 1100.0, 900.0, 1000.0],
        [10.0, 11.0, 9.0, 10.0],
    )
    tcsa = _cell_runs(
        "d",
        *G[:2],
        "TCSA",
        "direct",
        8,
        [95.0, 96.0, 94.0, 95.5],
        [150.0, 160.0, 140.0, 150.0],
        [3.0, 3.2, 2.8, 3.0],
    )
    ta = _cell_runs(
        "d",
        *G[:2],
        "TA",
        "direct",
        8,
        [90.5, 89.0, 91.5, 90.0],
        [800.0, 820.0, 780.0, 800.0],
        [8.0, 8.0, 8.0, 8.0],
    )
    return pd.DataFrame(
        _with_status(vanilla, vanilla_diverged)
        + _with_status(tcsa, variant_diverged)
        + _with_status(ta, other_diverged)
    )


def test_diverged_seed_is_left_out_and_counted():
    runs = _diverged_study(variant_diverged={1})
    table = ablation_table(runs)
    r = _row(table, "d", "TCSA")
    # 3 common completed seeds (0, 2, 3): both sides matched on them, the twin's seed 1 unused
    assert (r["seeds"], r["twin_seeds"]) == (3, 3)
    assert (r["n_diverged"], r["twin_n_diverged"]) == (1, 0)
    assert r["seeds_matched"]
    assert r["acc_mean"] == pytest.approx(np.mean([95.0, 94.0, 95.5]))
    assert r["twin_acc_mean"] == pytest.approx(np.mean([90.0, 89.0, 90.5]))
    ref = welch([95.0, 94.0, 95.5], [90.0, 89.0, 90.5])
    assert r["p_value"] == pytest.approx(ref.p_value) and bool(r["significant"])
    assert r["energy_uj_mean"] == pytest.approx(np.mean([3.0, 2.8, 3.0]))
    human = ablation_human(table)
    assert human.iloc[0]["Seeds"] == "3, 1 diverged vs 3"
    assert human.iloc[1]["Seeds"] == "4 vs 4"
    text = ablation_caption(table, 0.05, 3, "holm")
    assert "diverged" in text and "completed seeds only" in text
    assert "diverged" not in ablation_caption(ablation_table(_diverged_study()), 0.05, 3, "holm")


def test_too_few_completed_seeds_is_n_a_with_the_reason():
    table = ablation_table(_diverged_study(variant_diverged={0, 1}))
    r = _row(table, "d", "TCSA")
    assert (r["seeds"], r["n_diverged"]) == (2, 2)
    assert math.isnan(r["p_value"]) and pd.isna(r["significant"])
    assert r["acc_delta"] == pytest.approx(np.mean([94.0, 95.5]) - np.mean([90, 91, 89, 90.5]))
    row = ablation_human(table).iloc[0]
    assert row["p (adj.)"] == "n/a (2 seeds < 3, 2 diverged)"
    assert row["Significant"] == "n/a" and row["Seeds"] == "2, 2 diverged vs 4"
    assert row["Acc. Δ (pp)"].endswith("[n/a]")
    # the untested row does not count in Holm's m: TA alone in the family
    ta = _row(table, "d", "TA")
    assert ta["p_adjusted"] == pytest.approx(ta["p_value"])


def test_fully_diverged_vanilla_twin():
    runs = _diverged_study(vanilla_diverged={0, 1, 2, 3})
    table = ablation_table(runs)
    assert list(table["attention"]) == ["TCSA", "TA"]  # the rows stay, untested
    for _, r in table.iterrows():
        assert (r["twin_seeds"], r["twin_n_diverged"], r["seeds"]) == (0, 4, 4)
        for column in (
            "twin_acc_mean",
            "acc_delta",
            "acc_delta_ci_low",
            "p_value",
            "p_adjusted",
            "twin_spikes_mean",
            "spike_reduction_pct",
            "spike_reduction_ci_low",
            "spike_reduction_p_adjusted",
            "twin_energy_uj_mean",
            "energy_ratio",
        ):
            assert math.isnan(r[column]), column
        assert pd.isna(r["significant"])
    assert _row(table, "d", "TCSA")["acc_mean"] == pytest.approx(95.125)
    human = ablation_human(table)
    first = human.iloc[0]
    assert first["Seeds"] == "4 vs all 4 diverged"
    assert first["Acc. Δ (pp)"] == "n/a"
    assert first["p (adj.)"] == "n/a (twin: all 4 diverged)"
    assert (first["Significant"], first["Spikes -%"], first["Energy ratio"]) == ("n/a",) * 3
    assert not human.map(lambda v: bool(NAN_WORD.search(str(v)))).any().any()
    out = render_ablation("demo", table, ablation_caption(table, 0.05, 3, "holm"))
    assert "twin: all 4 diverged" in out["ablation.md"]
    assert not any(
        NAN_WORD.search(line) for line in out["ablation.md"].splitlines() if line.startswith("|")
    )
    csv = pd.read_csv(io.StringIO(out["ablation.csv"]))
    assert tuple(csv.columns) == ABLATION_COLUMNS
    assert csv["twin_n_diverged"].tolist() == [4, 4] and csv["n_diverged"].tolist() == [0, 0]
    assert csv["significant"].isna().all()
    # read back from CSV (no attrs, NaN as float): the reason is still given
    assert ablation_human(csv).iloc[0]["p (adj.)"] == "n/a (twin: all 4 diverged)"


def test_fully_diverged_variant_and_both_sides():
    table = ablation_table(_diverged_study(variant_diverged={0, 1, 2, 3}))
    row = ablation_human(table).iloc[0]
    assert row["p (adj.)"] == "n/a (variant: all 4 diverged)"
    assert row["Seeds"] == "all 4 diverged vs 4"
    both = ablation_table(
        _diverged_study(vanilla_diverged={0, 1, 2, 3}, variant_diverged={0, 1, 2, 3})
    )
    assert ablation_human(both).iloc[0]["p (adj.)"] == (
        "n/a (variant: all 4 diverged; twin: all 4 diverged)"
    )


def test_status_column_is_checked():
    runs = _diverged_study()
    runs.loc[0, "status"] = "running"
    with pytest.raises(ValueError, match="unknown status 'running'"):
        ablation_table(runs)
    # a completed run with a missing value is still refused; a diverged one is expected
    runs = _diverged_study(variant_diverged={1})
    runs.loc[0, "acc"] = math.nan
    with pytest.raises(ValueError, match="'d'.*seed 0 has a missing or non-finite"):
        ablation_table(runs)


def test_old_runs_without_status_match_all_completed():
    old = _diverged_study().drop(columns="status")
    pd.testing.assert_frame_equal(ablation_table(old), ablation_table(_diverged_study()))
