"""One arm against one reference on one metric: the means, spreads and counts, and the test the seeds allow.

- **Welch's t-test and interval** where both arms have 2+ seeds with some spread; the interval of a difference of
  accuracies is clipped to ±``SPAN`` (no difference lies beyond), and with fewer than ``MIN_SEEDS_FOR_INTERVAL``
  seeds in an arm ``note`` says it is too wide to mean anything.
- **An exact permutation test** where an arm does not vary across seeds beyond float32 rounding (Welch's statistic
  is then 0/0, infinite, or rests on the other arm's spread alone) and the seeds suffice for it to reach ``alpha``;
  before that (2 + 2 seeds: at best p = 1/3), means only, too few seeds.
- **No test** with fewer than two seeds in an arm (its spread is unknown), and **n/a** where neither arm has the
  metric (undefined for the data): never compared.

Accuracies are fractions; the statistics themselves are in ``equisweep.pipeline.report.stats``."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from equisweep.pipeline.report import stats as st

INCONCLUSIVE, NOT_APPLICABLE = "inconclusive", "n/a"
SPAN = 1.0  # accuracies are fractions: no difference of two lies beyond ±1
MIN_SEEDS_FOR_INTERVAL = 3  # with 2 seeds in an arm Welch's t has one or two degrees of freedom (t_0.975 up to 12.7)
PERMUTED = "an arm does not vary across seeds, so p is an exact permutation test (no interval)"
UNDEFINED = "neither arm has this metric (undefined for these data): never compared"


def compare(exact: np.ndarray, approx: np.ndarray, confidence: float = 0.95, alpha: float = 0.05) -> dict[str, Any]:
    """One row's statistics: arm means, sample stds (ddof 1) and counts (NaNs dropped), ``diff`` = approx - exact,
    Welch's interval (clipped to ±``SPAN``) and p-value, or an exact permutation test's p; NaN p and interval with
    the reason in ``note`` when there is no test, and a note where the interval rests on too few seeds."""
    exact, approx = exact[~np.isnan(exact)], approx[~np.isnan(approx)]
    n1, n2 = len(exact), len(approx)
    sd1, sd2 = st.sample_std(exact), st.sample_std(approx)
    row = {"exact_mean": st.mean(exact), "exact_std": sd1, "exact_n": n1, "arm_mean": st.mean(approx), "arm_std": sd2,
           "arm_n": n2, "diff": st.mean(approx) - st.mean(exact), "ci_low": math.nan, "ci_high": math.nan,
           "p_value": math.nan, "p_adjusted": math.nan, "detectable": math.nan, "seeds_to_detect": math.nan,
           "seeds_needed": math.nan, "verdict": INCONCLUSIVE, "note": ""}
    if n1 == n2 == 0:
        row.update(verdict=NOT_APPLICABLE, note=UNDEFINED)
    elif n1 < 2 or n2 < 2:
        row["note"] = _few_seeds(n1, n2)
    elif 0 in (sd1, sd2) and st.smallest_permutation_p(n1, n2) >= alpha:
        row["note"] = (f"{'neither arm varies' if sd1 == sd2 else 'an arm does not vary'} across seeds and {n1} + "
                       f"{n2} seeds are too few for an exact permutation test to reach p < {alpha:g} (at best "
                       f"{st.smallest_permutation_p(n1, n2):.2g}): means only, too few seeds")
    elif 0 in (sd1, sd2):
        row.update(p_value=st.permutation_test(*_as_read(exact, approx)), note=PERMUTED)
    else:
        low, high, p = st.welch(exact, approx, confidence)
        row.update(ci_low=max(low, -SPAN), ci_high=min(high, SPAN), p_value=p)
        if min(n1, n2) < MIN_SEEDS_FOR_INTERVAL:
            row["note"] = f"with {min(n1, n2)} seeds in an arm the t-interval is too wide to mean anything"
    return row


def _as_read(exact: np.ndarray, approx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two arms as float32 resolution reads them: an arm without spread is its mean repeated, and both are one value
    where neither varies and they agree."""
    pooled = np.concatenate([exact, approx])
    if st.sample_std(pooled) == 0:
        return np.full(len(exact), st.mean(pooled)), np.full(len(approx), st.mean(pooled))
    exact, approx = (np.full(len(values), st.mean(values)) if st.sample_std(values) == 0 else values
                     for values in (exact, approx))
    return exact, approx


def _few_seeds(n_exact: int, n_approx: int) -> str:
    if n_exact == n_approx == 1:
        return "with one seed per arm there is no test; means only"
    if n_exact == 0 or n_approx == 0:
        return f"the {'exact' if n_exact == 0 else 'approximate'} arm has no value for this metric; no test"
    arm = "exact" if n_exact < 2 else "approximate"
    return f"with one seed in the {arm} arm its spread is unknown, so there is no test; means only"
