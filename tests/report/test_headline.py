"""headline.md: one sentence per variant against its vanilla twin, read from the ablation table."""

from __future__ import annotations

import io
import math

import pandas as pd
import pytest
from scipy import stats
from test_ablation import _cell_runs, _with_status

from spikeattn.report.ablation import ablation_table, render_ablation
from spikeattn.report.headline import headline_html, headline_lines, headline_note, render_headline

DVS = ("digits-dvs", "demo_cnn")  # T=8, 3 seeds: every comparison tested
STATIC = ("digits", "demo_cnn")  # T=4, 2 seeds: none tested, coding varies
DVS_CELLS = {  # attention: (acc, spikes) over seeds 0, 1, 2
    "none": ([90.0, 91.0, 89.0], [1000.0, 1100.0, 900.0]),
    "TCSA": ([95.0, 96.0, 94.0], [150.0, 160.0, 140.0]),
    "TA": ([90.5, 89.0, 91.5], [800.0, 820.0, 780.0]),
}
STATIC_CELLS = {  # (attention, coding): (acc, spikes) over seeds 0, 1
    ("none", "direct"): ([80.0, 82.0], [400.0, 420.0]),
    ("none", "gac"): ([83.0, 85.0], [300.0, 320.0]),
    ("SMA", "direct"): ([81.0, 81.0], [500.0, 520.0]),
}

# Written out. dvs, TCSA vs none: spikes 150 / 1000 = 0.15, -85.0%; Fieller's 95% ratio
# interval [0.1132, 0.2058] (test_spike_interval_by_hand) is the change [-88.7, -79.4]%;
# Welch p 0.004266, Holm over the study's two spike tests 2 x 0.004266 = 0.009. Accuracy
# +5.00 pp, se = sqrt(1/3 + 1/3), df 4, +-2.776445 se = +-2.27: [+2.73, +7.27]; p 0.003602,
# Holm 2 x 0.003602 = 0.007. TA: spikes 800 / 1000, -20.0% [-35.6, +4.7], p 0.069 (Holm:
# max(0.009, 0.0690)); accuracy +0.33 pp [-2.30, +2.96], p 0.738.
DVS_LINES = [
    "TCSA vs none (dvs, seeds 3 vs 3): spikes -85.0% [95% CI -88.7, -79.4], p=0.009, "
    "significant; accuracy +5.00 pp [95% CI +2.73, +7.27], p=0.007, significant",
    "TA vs none (dvs, seeds 3 vs 3): spikes -20.0% [95% CI -35.6, +4.7], p=0.069, "
    "not significant; accuracy +0.33 pp [95% CI -2.30, +2.96], p=0.738, not significant",
]
# static: 2 seeds < 3, so no test; spikes 310 / 410 - 1 = -24.4%, 510 / 410 - 1 = +24.4%;
# accuracy 84 - 81 = +3.00 pp and 81 - 81 = +0.00 pp. Coding varies, so labels name it.
STATIC_LINES = [
    "none / gac vs none / direct (static, seeds 2 vs 2): spikes -24.4%, p n/a (2 seeds < 3); "
    "accuracy +3.00 pp, p n/a (2 seeds < 3)",
    "SMA / direct vs none / direct (static, seeds 2 vs 2): spikes +24.4%, p n/a (2 seeds < 3); "
    "accuracy +0.00 pp, p n/a (2 seeds < 3)",
]


def _runs() -> pd.DataFrame:
    rows = []
    for att, (acc, spikes) in DVS_CELLS.items():
        rows += _cell_runs("dvs", *DVS, att, "direct", 8, acc, spikes, [1.0] * 3)
    for (att, cod), (acc, spikes) in STATIC_CELLS.items():
        rows += _cell_runs("static", *STATIC, att, cod, 4, acc, spikes, [1.0] * 2)
    return pd.DataFrame(rows)


@pytest.fixture
def table() -> pd.DataFrame:
    return ablation_table(_runs())


def test_lines_per_study_written_out(table):
    assert headline_lines(table, 0.05, 3) == {"dvs": DVS_LINES, "static": STATIC_LINES}


def test_spike_interval_by_hand(table):
    """The TCSA interval in DVS_LINES from Fieller's quadratic, solved here."""
    m_a, m_b, q_a, q_b = 150.0, 1000.0, 100.0 / 3, 10000.0 / 3
    df = (q_a + q_b) ** 2 / (q_a**2 / 2 + q_b**2 / 2)
    t2 = stats.t.ppf(0.975, df) ** 2
    a2, b1, c0 = m_b**2 - t2 * q_b, m_a * m_b, m_a**2 - t2 * q_a
    disc = math.sqrt(b1**2 - a2 * c0)
    low, high = (b1 - disc) / a2, (b1 + disc) / a2
    assert f"[95% CI {100 * (low - 1):+.1f}, {100 * (high - 1):+.1f}]" in DVS_LINES[0]
    tcsa = table.iloc[0]
    assert tcsa["spike_reduction_ci_low"] == pytest.approx(100 * (1 - high))
    assert tcsa["spike_reduction_ci_high"] == pytest.approx(100 * (1 - low))


def test_lines_come_from_the_csv_alone(table):
    """ablation.csv read back (no attrs, verdicts as objects) gives the same sentences."""
    csv = pd.read_csv(io.StringIO(render_ablation("demo", table, "c.")["ablation.csv"]))
    assert headline_lines(csv, 0.05, 3) == headline_lines(table, 0.05, 3)


def test_alpha_sets_the_interval_level_and_the_verdict():
    strict = ablation_table(_runs(), alpha=0.001)
    lines = headline_lines(strict, 0.001, 3)["dvs"]
    assert lines[0].startswith("TCSA vs none (dvs, seeds 3 vs 3): spikes -85.0% [99.9% CI ")
    assert "p=0.009, not significant" in lines[0] and "p=0.007, not significant" in lines[0]


def test_untested_and_uncompared_say_why():
    """A twin whose seeds all diverged: no values, n/a with the reason."""
    vanilla = _cell_runs("d", *DVS, "none", "direct", 8, [90.0] * 3, [900.0] * 3, [1.0] * 3)
    tcsa = _cell_runs("d", *DVS, "TCSA", "direct", 8, [95.0] * 3, [150.0] * 3, [1.0] * 3)
    runs = pd.DataFrame(_with_status(vanilla, {0, 1, 2}) + _with_status(tcsa))
    assert headline_lines(ablation_table(runs), 0.05, 3) == {
        "d": [
            "TCSA vs none (d, seeds 3 vs all 3 diverged): spikes n/a (twin: all 3 diverged); "
            "accuracy n/a (twin: all 3 diverged)"
        ]
    }
    # without min_seeds (a caller that does not know it) the reason still counts the seeds
    static = headline_lines(ablation_table(_runs()), 0.05)["static"]
    assert static[0].endswith("accuracy +3.00 pp, p n/a (2 seeds)")


def test_unbounded_spike_interval():
    vanilla = _cell_runs(
        "u", *DVS, "none", "direct", 8, [1.0, 2.0, 3.0], [-1.0, 1.0, 2.0], [1.0] * 3
    )
    ta = _cell_runs("u", *DVS, "TA", "direct", 8, [1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [1.0] * 3)
    line = headline_lines(ablation_table(pd.DataFrame(vanilla + ta)), 0.05, 3)["u"][0]
    # twin spikes 2/3 +- sqrt(7/9): indistinguishable from 0, so every large ratio fits;
    # Welch: diff 4/3, se sqrt(1/3 + 7/9), t 1.265, df 3.45, p 0.285
    assert "spikes +200.0% [95% CI unbounded], p=0.285, not significant" in line


def test_render_headline_markdown(table):
    md = render_headline("demo", table, 0.05, 3, "holm")["headline.md"]
    note = headline_note(0.05, 3, "holm")
    bullets = "\n".join(f"- {line}" for line in DVS_LINES)
    statics = "\n".join(f"- {line}" for line in STATIC_LINES)
    assert md == f"# demo: headline\n\n{note}\n\n## dvs\n\n{bullets}\n\n## static\n\n{statics}\n"
    for needle in ("95% Fieller", "95% Welch", "Holm-adjusted within each study", "p < 0.05"):
        assert needle in note
    assert "not adjusted" in headline_note(0.05, 3, "none")
    with pytest.raises(ValueError, match="holm, none"):
        headline_note(0.05, 3, "bonferroni")


def test_render_headline_without_twins():
    lone = ablation_table(_runs().query("attention != 'none'"))
    assert lone.empty
    md = render_headline("demo", lone, 0.05, 3, "holm")["headline.md"]
    assert md.startswith("# demo: headline\n\n") and "nothing to compare" in md
    assert "No variant has a vanilla twin" in headline_html({})


def test_headline_html_escapes_each_line():
    page = headline_html({"s<1>": ["a < b & c", "d"]})
    assert "<h3>s&lt;1&gt;</h3>" in page
    assert '<ul class="headline"><li>a &lt; b &amp; c</li><li>d</li></ul>' in page
