"""Significance of a difference between two cells, so seed noise is never reported as a gain.

A study trains each cell over a handful of seeds. Whether a variant's accuracy gain over its
vanilla twin is real is a two-sample question on those per-seed values: Welch's t-test (no
equal-variance assumption: an attention module can make training more or less stable) with
the matching Welch–Satterthwaite confidence interval, and Holm's step-down correction when a
study asks the question once per variant. A relative change (spikes: "-84.9% against the
vanilla SNN") is a ratio of two means; its interval is Fieller's (fieller_ratio), built on the
same Welch standard error and df, so it agrees with the Welch test of the difference.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class Comparison:
    """Welch comparison of sample `a` against sample `b` (diff = mean_a - mean_b).

    `testable` is True when both sides have at least `min_seeds` values; only then are the
    interval and the p-value defined (NaN otherwise, while `diff` is always reported).
    """

    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    testable: bool


def _sample(values: Sequence[float], side: str) -> np.ndarray:
    """A 1-d float array; a NaN or inf would silently poison the test, so it is refused."""
    arr = np.asarray(list(values), dtype=float).ravel()
    if not np.isfinite(arr).all():
        raise ValueError(f"welch: sample {side} has non-finite values {arr.tolist()}")
    return arr


def _mean(arr: np.ndarray) -> float:
    return float(arr.mean()) if arr.size else math.nan


def welch_df(var_a: float, n_a: int, var_b: float, n_b: int) -> float:
    """Welch–Satterthwaite degrees of freedom of the difference of two means."""
    qa, qb = var_a / n_a, var_b / n_b
    return (qa + qb) ** 2 / (qa**2 / (n_a - 1) + qb**2 / (n_b - 1))


def welch(
    a: Sequence[float], b: Sequence[float], alpha: float = 0.05, min_seeds: int = 3
) -> Comparison:
    """Two-sided Welch t-test of mean(a) == mean(b) and the (1 - alpha) interval of the gap.

    The p-value is scipy's `ttest_ind(equal_var=False)`; the interval is built here from the
    same standard error and Welch–Satterthwaite df, so the two always agree. When both
    samples have zero variance (e.g. deterministic training), the t statistic is 0/0 or ±inf:
    equal means give p = 1, and different means are an exact difference, p = 0 and the
    interval collapses to [diff, diff]. Fewer than `min_seeds` values on either side (or
    fewer than 2, whatever `min_seeds` says) leave p and the interval NaN.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"welch: alpha must be in (0, 1), got {alpha!r}")
    xa, xb = _sample(a, "a"), _sample(b, "b")
    n_a, n_b = int(xa.size), int(xb.size)
    mean_a, mean_b = _mean(xa), _mean(xb)
    diff = mean_a - mean_b
    untested = Comparison(n_a, n_b, mean_a, mean_b, diff, math.nan, math.nan, math.nan, False)
    if min(n_a, n_b) < max(int(min_seeds), 2):
        return untested
    if np.ptp(xa) == 0 and np.ptp(xb) == 0:  # exact ties, not var() == 0: no float dust
        p = 1.0 if diff == 0 else 0.0
        return Comparison(n_a, n_b, mean_a, mean_b, diff, diff, diff, p, True)
    var_a, var_b = float(xa.var(ddof=1)), float(xb.var(ddof=1))
    se = math.sqrt(var_a / n_a + var_b / n_b)
    from scipy import stats as _st  # imported here: planning a workflow never needs it

    half = float(_st.t.ppf(1.0 - alpha / 2.0, welch_df(var_a, n_a, var_b, n_b))) * se
    with warnings.catch_warnings():
        if np.ptp(xa) == 0 or np.ptp(xb) == 0:  # one constant side: its variance is exactly 0
            warnings.filterwarnings("ignore", "Precision loss", RuntimeWarning)
        p = float(_st.ttest_ind(xa, xb, equal_var=False).pvalue)
    return Comparison(n_a, n_b, mean_a, mean_b, diff, diff - half, diff + half, p, True)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values, in the input order.

    NaNs (untested comparisons) stay NaN and do not count in m, so an untestable cell
    neither costs nor gains the others anything. Adjusted values are monotone in the raw
    ones and capped at 1; reject where adjusted < alpha controls the family-wise error.
    """
    p = np.asarray(list(p_values), dtype=float)
    if np.any((p < 0) | (p > 1)):
        raise ValueError(f"holm: p-values must lie in [0, 1], got {p.tolist()}")
    out = np.full(p.shape, math.nan)
    tested = np.flatnonzero(~np.isnan(p))
    order = tested[np.argsort(p[tested], kind="stable")]
    m = order.size
    running = 0.0
    for rank, idx in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[idx]))
        out[idx] = running
    return [float(v) for v in out]


@dataclass(frozen=True)
class RatioInterval:
    """Fieller's (1 - alpha) interval of mean_a / mean_b (see fieller_ratio).

    `low`/`high` are NaN when untested (too few values, or a zero twin mean) and when the
    interval is unbounded (`bounded` False: the denominator's mean is not distinguishable
    from 0 at this level, so every large ratio is plausible).
    """

    ratio: float
    low: float
    high: float
    bounded: bool


def fieller_ratio(
    a: Sequence[float], b: Sequence[float], alpha: float = 0.05, min_seeds: int = 3
) -> RatioInterval:
    """Fieller's (1 - alpha) confidence interval for mean(a) / mean(b), independent samples
    with unequal variances.

    Why Fieller and not Welch's interval of the difference divided by mean(b): that
    treats the twin's mean as random in the difference but as a known constant in the
    denominator. The twin's noise moves the ratio by r times its relative error, so the
    two agree near r = 1 and part ways as r leaves it: for [150, 160, 140] against
    [1000, 1100, 900] spikes (r = 0.15, 85% fewer) the divided interval is r in
    [-0.10, 0.40], a negative spike count included, and Fieller's [0.11, 0.21]. Fieller's
    interval counts the twin's noise once, where it acts: it is the set of ratios r that a
    Welch-type t-test of mean_a - r mean_b = 0 does not reject:

        (m_a - r m_b)^2 <= t^2 (q_a + r^2 q_b),  q = var(ddof=1) / n,

    a quadratic in r, A r^2 - 2 B r + C <= 0 with A = m_b^2 - t^2 q_b, B = m_a m_b,
    C = m_a^2 - t^2 q_a, whose roots are (B -/+ sqrt(B^2 - A C)) / A. t is the
    (1 - alpha/2) quantile of Student's t at the Welch–Satterthwaite df of the difference,
    the df `welch` tests with: at r = 1 the inequality is the Welch test itself, so the
    interval excludes 1 exactly when welch(a, b).p_value < alpha (a simplification: a
    strict test inversion would re-compute the df at every r). A <= 0 (mean(b) within
    t standard errors of 0) leaves the set unbounded: bounded=False, NaN ends. Both samples
    constant: the interval collapses to the ratio, as welch's does to the difference.
    Fewer than max(min_seeds, 2) values on a side, or mean(b) == 0: NaN ends.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"fieller_ratio: alpha must be in (0, 1), got {alpha!r}")
    xa, xb = _sample(a, "a"), _sample(b, "b")
    mean_a, mean_b = _mean(xa), _mean(xb)
    ratio = mean_a / mean_b if xb.size and mean_b != 0 else math.nan
    untested = RatioInterval(ratio, math.nan, math.nan, True)
    if min(xa.size, xb.size) < max(int(min_seeds), 2) or not math.isfinite(ratio):
        return untested
    if np.ptp(xa) == 0 and np.ptp(xb) == 0:
        return RatioInterval(ratio, ratio, ratio, True)
    qa, qb = float(xa.var(ddof=1)) / xa.size, float(xb.var(ddof=1)) / xb.size
    from scipy import stats as _st  # imported here: planning a workflow never needs it

    df = welch_df(qa * xa.size, int(xa.size), qb * xb.size, int(xb.size))
    t2 = float(_st.t.ppf(1.0 - alpha / 2.0, df)) ** 2
    A, B, C = mean_b**2 - t2 * qb, mean_a * mean_b, mean_a**2 - t2 * qa
    if A <= 0:
        return RatioInterval(ratio, math.nan, math.nan, False)
    # B^2 - A C = t^2 (qa m_b^2 + qb m_a^2 - t^2 qa qb) >= 0 when A > 0; max() drops rounding
    root = math.sqrt(max(0.0, B * B - A * C))
    return RatioInterval(ratio, (B - root) / A, (B + root) / A, True)
