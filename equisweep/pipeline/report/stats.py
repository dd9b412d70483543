"""The statistics of the verdict, free of tables and words: Welch's test and interval, an exact permutation test,
Holm's correction, and the power of Welch's test (the smallest detectable difference, the seeds needed).

scipy and numpy only; every function takes plain numbers or arrays."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
from scipy import optimize, special, stats

POWER = 0.8  # the power at which ``detectable_difference`` and ``seeds_needed`` are computed by default
_NODES = 48  # Gauss–Jacobi nodes for the power's average over Welch's degrees of freedom
_LARGE_ARM = 1000  # seeds per arm beyond which Welch's degrees of freedom are taken as 2n - 2


def mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if len(values) else math.nan


def sample_std(values: np.ndarray) -> float:
    """The sample std (ddof 1), NaN for fewer than 2 values; exactly 0 when the values agree to float32 resolution:
    the metrics are computed in float32, so a smaller spread (0.5 against 0.49999997, say) is rounding, not seed
    noise."""
    if len(values) < 2:
        return math.nan
    resolution = 4 * np.finfo(np.float32).eps * float(np.max(np.abs(values)))
    return 0.0 if np.ptp(values) <= resolution else float(np.std(values, ddof=1))


def welch(exact: np.ndarray, arm: np.ndarray, confidence: float) -> tuple[float, float, float]:
    """Welch's interval of ``mean(arm) - mean(exact)`` at ``confidence`` (Welch–Satterthwaite degrees of freedom)
    and the two-sided p-value of Welch's t-test, as ``(low, high, p)``; both arms need 2+ values and some spread."""
    n1, n2 = len(exact), len(arm)
    var1, var2 = sample_std(exact) ** 2 / n1, sample_std(arm) ** 2 / n2
    df = (var1 + var2) ** 2 / (var1**2 / (n1 - 1) + var2**2 / (n2 - 1))
    half = stats.t.ppf((1 + confidence) / 2, df) * math.sqrt(var1 + var2)
    diff = mean(arm) - mean(exact)
    return diff - half, diff + half, float(stats.ttest_ind(arm, exact, equal_var=False).pvalue)


def permutation_test(first: Sequence[float], second: Sequence[float]) -> float:
    """The exact two-sided p-value of the difference of means: the share of all ways to relabel the pooled values
    into groups of the two sizes whose |difference of means| reaches the observed one. It needs no spread, so it
    tests arms whose seeds all give the same value, where Welch's statistic is 0/0 or infinite.

    Relabellings that move the same number of copies of each distinct value give the same difference, so they are
    counted together (binomial weights): arms of a few distinct values cost little whatever their size."""
    first, second = np.asarray(first, float), np.asarray(second, float)
    values, counts = np.unique(np.concatenate([first, second]), return_counts=True)
    n, rest, total = len(first), len(second), float(np.dot(values, counts))
    observed = abs(first.mean() - second.mean())
    tolerance = 1e-9 * max(1.0, observed)  # the observed split summed in another order must still reach it
    reached = 0
    for picks in itertools.product(*(range(count + 1) for count in counts)):
        if sum(picks) != n:
            continue
        chosen = float(np.dot(picks, values))
        if abs(chosen / n - (total - chosen) / rest) >= observed - tolerance:
            reached += math.prod(math.comb(count, k) for count, k in zip(counts, picks))
    return reached / math.comb(n + rest, n)


def smallest_permutation_p(n1: int, n2: int) -> float:
    """The smallest p-value ``permutation_test`` can give for groups of ``n1`` and ``n2`` values: only the observed
    split (and, for equal sizes, its mirror image) reaches the largest difference."""
    return (2 if n1 == n2 else 1) / math.comb(n1 + n2, n1)


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values; NaNs (rows without a test) stay NaN and do not count as tests."""
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(p.shape, np.nan)
    tested = np.flatnonzero(~np.isnan(p))
    order = tested[np.argsort(p[tested], kind="stable")]
    count = len(order)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (count - rank) * p[index]))
        adjusted[index] = running
    return adjusted


def power(diff: float, n1: int, n2: int, std: float, level: float) -> float:
    """The chance that Welch's two-sided test at ``level`` detects a true difference ``diff`` between arms of
    ``n1`` and ``n2`` seeds with a common std ``std``.

    Exact for equal arms of n seeds: Welch's statistic is then the pooled t (noncentral t, 2n - 2 df), and its
    Welch–Satterthwaite df, (n - 1) / (u² + (1 - u)²), depends only on the share u = s1² / (s1² + s2²) ~ Beta((n-1)/2,
    (n-1)/2), which is independent of it; the power is the Beta-average of the noncentral-t tails beyond the critical
    value at that df (Gauss–Jacobi quadrature). With few seeds the df is often near n - 1, so Welch's test has
    clearly less power than the pooled t-test. Unequal arms count as two arms of the smaller size (conservative).
    """
    n = min(n1, n2)
    shift = abs(diff) / (std * math.sqrt(2 / n))
    if n > _LARGE_ARM:  # the df is 2n - 2 up to a negligible spread
        shares, weights = np.array([0.5]), np.array([1.0])
    else:
        nodes, weights = special.roots_jacobi(_NODES, (n - 3) / 2, (n - 3) / 2)
        shares, weights = (1 + nodes) / 2, weights / weights.sum()
    critical = stats.t.ppf(1 - level / 2, (n - 1) / (shares**2 + (1 - shares) ** 2))
    # the lower tail P(T < -c) as P(T' > c) with the shift negated: scipy's far-left cdf can come back NaN
    tails = stats.nct.sf(critical, 2 * n - 2, shift) + stats.nct.sf(critical, 2 * n - 2, -shift)
    return float(np.dot(weights, tails))


def detectable_difference(n1: int, n2: int, std: float, level: float, target: float = POWER) -> float:
    """The smallest difference that arms of ``n1`` and ``n2`` seeds detect with power ``target`` at ``level``."""
    if not std > 0 or n1 < 2 or n2 < 2 or math.isnan(level):
        return math.nan
    high = std * math.sqrt(1 / n1 + 1 / n2)
    while power(high, n1, n2, std, level) < target:
        high *= 2
    return float(optimize.brentq(lambda d: power(d, n1, n2, std, level) - target, 0.0, high, xtol=1e-12 * high))


def seeds_needed(diff: float, std: float, level: float, target: float = POWER, most: int = 10**9) -> float:
    """The fewest seeds per arm (both arms alike) that detect a true difference ``diff`` with power ``target`` at
    ``level``, given the std ``std``: infinite for ``diff == 0`` (or beyond ``most``), NaN when ``std`` is unknown."""
    if not std > 0 or math.isnan(diff) or math.isnan(level):
        return math.nan
    if diff == 0:
        return math.inf
    low, high = 1, 2  # power(low) < target <= power(high)
    while power(diff, high, high, std, level) < target:
        low, high = high, high * 2
        if high > most:
            return math.inf
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if power(diff, middle, middle, std, level) >= target else (middle, high)
    return float(high)


def pooled_std(n1: int, std1: float, n2: int, std2: float) -> float:
    """The pooled sample std of two arms."""
    return math.sqrt(((n1 - 1) * std1**2 + (n2 - 1) * std2**2) / (n1 + n2 - 2))
