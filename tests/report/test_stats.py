"""welch, holm and fieller_ratio: hand-computed values, agreement with scipy, and the
degenerate cases."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import stats

from spikeattn.report.stats import Comparison, fieller_ratio, holm, welch, welch_df


def _t4_two_sided_p(t: float) -> float:
    """Two-sided p of Student's t with 4 df from its closed-form CDF (no scipy)."""
    x = t * t / 4.0
    half = 3.0 / 8.0 * abs(t) / math.sqrt(1.0 + x) * (1.0 - x / (3.0 * (1.0 + x)))
    return 1.0 - 2.0 * half


def test_hand_computed_example():
    # a = [1,2,3], b = [4,5,6]: both variances 1, se = sqrt(2/3), t = -3/se, df = 4 exactly.
    res = welch([1, 2, 3], [4, 5, 6])
    assert isinstance(res, Comparison) and res.testable
    assert (res.n_a, res.n_b, res.mean_a, res.mean_b) == (3, 3, 2.0, 5.0)
    assert res.diff == -3.0
    se = math.sqrt(2.0 / 3.0)
    assert welch_df(1.0, 3, 1.0, 3) == pytest.approx(4.0)
    assert res.p_value == pytest.approx(_t4_two_sided_p(-3.0 / se), rel=1e-9)
    t_975_df4 = 2.7764451051977987  # tabulated 97.5% quantile of t with 4 df
    assert res.ci_low == pytest.approx(-3.0 - t_975_df4 * se, rel=1e-9)
    assert res.ci_high == pytest.approx(-3.0 + t_975_df4 * se, rel=1e-9)
    assert res.p_value == pytest.approx(0.0213116, abs=1e-6)


@pytest.mark.parametrize("alpha", [0.05, 0.01, 0.2])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_scipy(alpha, seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(90.0, 0.5, size=3 + seed)
    b = rng.normal(89.0, 2.0, size=5)
    res = welch(a, b, alpha=alpha)
    ref = stats.ttest_ind(a, b, equal_var=False)
    ci = ref.confidence_interval(1 - alpha)
    assert res.p_value == pytest.approx(ref.pvalue, rel=1e-12)
    assert (res.ci_low, res.ci_high) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert res.diff == pytest.approx(a.mean() - b.mean())
    assert res.ci_low < res.diff < res.ci_high


def test_interval_excludes_zero_iff_p_below_alpha():
    for shift in (0.0, 0.5, 1.0, 2.0, 4.0):
        res = welch([1.0, 2.0, 3.5], [1.2 + shift, 2.1 + shift, 2.9 + shift], alpha=0.05)
        assert (res.p_value < 0.05) == (res.ci_high < 0 or res.ci_low > 0)


def test_zero_variance_both_sides():
    same = welch([95.0] * 3, [95.0] * 3)
    assert same.testable and same.p_value == 1.0 and same.diff == 0.0
    exact = welch([96.0, 96.0, 96.0], [95.0, 95.0, 95.0])
    assert exact.testable and exact.p_value == 0.0
    assert exact.ci_low == exact.ci_high == exact.diff == 1.0
    # float sums of identical values must not leave "float dust" variance
    dust = welch([0.1] * 3, [0.1] * 3)
    assert dust.p_value == 1.0 and dust.diff == 0.0


def test_zero_variance_one_side_is_an_ordinary_welch_test():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scipy's spurious "Precision loss" is filtered in welch
        res = welch([95.0, 95.0, 95.0], [94.0, 95.0, 96.5])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = stats.ttest_ind([95.0] * 3, [94.0, 95.0, 96.5], equal_var=False)
    assert res.p_value == pytest.approx(ref.pvalue)


def test_too_few_seeds_untestable_but_diff_reported():
    res = welch([1.0, 2.0], [4.0, 5.0, 6.0])
    assert not res.testable and res.diff == -3.5
    assert math.isnan(res.p_value) and math.isnan(res.ci_low) and math.isnan(res.ci_high)
    assert welch([1.0, 2.0], [4.0, 5.0], min_seeds=2).testable
    one = welch([1.0], [2.0, 3.0], min_seeds=1)  # a single value never has a variance
    assert not one.testable and one.diff == -1.5
    empty = welch([], [1.0, 2.0, 3.0])
    assert empty.n_a == 0 and math.isnan(empty.diff) and not empty.testable


def test_rejects_nan_values_and_bad_alpha():
    with pytest.raises(ValueError, match="non-finite"):
        welch([1.0, math.nan, 3.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="alpha"):
        welch([1, 2, 3], [4, 5, 6], alpha=1.5)


def test_holm_known_example():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.01]) == [0.01]
    assert holm([]) == []


def test_holm_is_monotone_and_capped():
    p = [0.2, 0.5, 0.001, 0.3]
    adj = holm(p)
    assert adj == pytest.approx([0.6, 0.6, 0.004, 0.6])
    order = np.argsort(p)
    assert all(np.diff(np.asarray(adj)[order]) >= 0)
    assert max(holm([0.4, 0.6, 0.9])) == 1.0
    assert all(a >= r for a, r in zip(adj, p))


def test_holm_nan_kept_and_not_counted():
    adj = holm([math.nan, 0.02, 0.5, math.nan])
    assert math.isnan(adj[0]) and math.isnan(adj[3])
    assert adj[1:3] == pytest.approx([0.04, 0.5])  # m = 2, not 4
    assert all(math.isnan(v) for v in holm([math.nan, math.nan]))
    with pytest.raises(ValueError):
        holm([0.5, 1.2])


# -- fieller_ratio -----------------------------------------------------------------------------
def _fieller_by_hand(m_a, m_b, q_a, q_b, t):
    """Roots of (m_a - r m_b)^2 = t^2 (q_a + r^2 q_b), written out."""
    a2, b1, c0 = m_b**2 - t**2 * q_b, m_a * m_b, m_a**2 - t**2 * q_a
    disc = math.sqrt(b1**2 - a2 * c0)
    return (b1 - disc) / a2, (b1 + disc) / a2


def test_fieller_hand_computed_example():
    # a = [4,5,6], b = [9,10,11]: means 5 and 10, both variances 1, q = 1/3 each, df = 4.
    res = fieller_ratio([4, 5, 6], [9, 10, 11])
    t_975_df4 = 2.7764451051977987
    low, high = _fieller_by_hand(5.0, 10.0, 1 / 3, 1 / 3, t_975_df4)
    assert res.ratio == 0.5 and res.bounded
    assert (res.low, res.high) == (pytest.approx(low, rel=1e-12), pytest.approx(high, rel=1e-12))
    assert (res.low, res.high) == (pytest.approx(0.3311417, abs=1e-7), pytest.approx(0.6952315))
    for r in (res.low, res.high):  # each end is a ratio the Welch-type test just fails to reject
        assert (5.0 - r * 10.0) ** 2 == pytest.approx(t_975_df4**2 * (1 / 3 + r * r / 3))


def test_fieller_unequal_variances_uses_the_welch_df():
    a, b = [150.0, 160.0, 140.0], [1000.0, 1100.0, 900.0]
    q_a, q_b = 100.0 / 3, 10000.0 / 3
    df = (q_a + q_b) ** 2 / (q_a**2 / 2 + q_b**2 / 2)
    assert df == pytest.approx(welch_df(100.0, 3, 10000.0, 3))
    low, high = _fieller_by_hand(150.0, 1000.0, q_a, q_b, stats.t.ppf(0.975, df))
    res = fieller_ratio(a, b)
    assert (res.low, res.high) == (pytest.approx(low), pytest.approx(high))
    assert res.low < 0.15 < res.high
    # narrower than Welch's difference interval divided by the twin's mean: the twin's noise
    # moves a ratio of 0.15 by 0.15 times its relative error, not by all of it
    diff = welch(a, b)
    assert res.high - res.low < (diff.ci_high - diff.ci_low) / 1000.0


@pytest.mark.parametrize(
    "a, b",
    [
        ([150.0, 160.0, 140.0], [1000.0, 1100.0, 900.0]),  # p < 0.05
        ([800.0, 820.0, 780.0], [1000.0, 1100.0, 900.0]),  # p > 0.05
        ([9.0, 11.0, 10.5, 9.5], [10.0, 12.0, 11.0]),  # p > 0.05, unequal n
        ([5.0, 5.2, 5.1], [6.0, 6.05, 6.1]),  # p < 0.05
    ],
)
@pytest.mark.parametrize("alpha", [0.05, 0.2])
def test_fieller_excludes_one_iff_welch_rejects(a, b, alpha):
    res, test = fieller_ratio(a, b, alpha), welch(a, b, alpha)
    assert (not res.low <= 1.0 <= res.high) == (test.p_value < alpha)


def test_fieller_degenerate_cases():
    # twin mean within t standard errors of 0: no interval, but a ratio and bounded=False
    res = fieller_ratio([1.0, 2.0, 3.0], [-1.0, 1.0, 2.0])
    assert res.ratio == pytest.approx(3.0) and not res.bounded
    assert math.isnan(res.low) and math.isnan(res.high)
    # both constant: collapses to the ratio, like welch's interval to the difference
    flat = fieller_ratio([2.0] * 3, [8.0] * 3)
    assert (flat.ratio, flat.low, flat.high, flat.bounded) == (0.25, 0.25, 0.25, True)
    # too few values, an empty side, a zero twin mean: untested, NaN ends
    for a, b in (([1.0, 2.0], [3.0, 4.0]), ([1.0, 2.0, 3.0], []), ([1.0, 2.0, 3.0], [0.0] * 3)):
        res = fieller_ratio(a, b)
        assert math.isnan(res.low) and math.isnan(res.high) and res.bounded
    assert fieller_ratio([1.0, 2.0], [3.0, 5.0]).ratio == pytest.approx(0.375)
    assert math.isfinite(fieller_ratio([1.0, 2.0], [10.0, 11.0], min_seeds=2).low)  # 2 allowed
    with pytest.raises(ValueError, match="alpha"):
        fieller_ratio([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], alpha=1.0)
    with pytest.raises(ValueError, match="non-finite"):
        fieller_ratio([1.0, math.nan, 3.0], [1.0, 2.0, 3.0])
