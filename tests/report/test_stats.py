"""welch and holm: hand-computed values, agreement with scipy, and the degenerate cases."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import stats

from spikeattn.report.stats import Comparison, holm, welch, welch_df


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
