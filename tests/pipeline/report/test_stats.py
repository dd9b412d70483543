"""The verdict's statistics on hand-made numbers: the exact permutation test against a brute-force enumeration."""

import itertools
import math

import numpy as np
import pytest

from equisweep.pipeline.report import stats as st


def _brute_force(first, second) -> float:
    """Every relabelling enumerated one by one: the share whose |difference of means| reaches the observed one."""
    pooled = np.concatenate([first, second])
    observed = abs(np.mean(first) - np.mean(second))
    reached = [abs(pooled[list(chosen)].mean() - np.delete(pooled, list(chosen)).mean()) >= observed - 1e-12
               for chosen in itertools.combinations(range(len(pooled)), len(first))]
    return float(np.mean(reached))


@pytest.mark.parametrize(("first", "second"), [
    ([0.1, 0.4, 0.35, 0.2], [0.5, 0.45, 0.6, 0.3, 0.55]),  # all values distinct
    ([0.9, 0.9, 0.8], [0.9, 0.95, 0.95, 0.8]),  # ties across and inside the groups
    ([0.5, 0.5, 0.5], [0.5, 0.5]),  # nothing differs: every relabelling reaches 0
])
def test_the_permutation_test_counts_every_relabelling(first, second):
    assert st.permutation_test(first, second) == pytest.approx(_brute_force(np.array(first), np.array(second)))


def test_arms_without_spread_reach_the_smallest_p_and_need_enough_seeds_for_alpha():
    # only the observed split and its mirror image separate the two values: 2 of C(2n, n) relabellings
    for n in (2, 4, 5, 30):
        assert st.permutation_test([0.9] * n, [0.95] * n) == pytest.approx(2 / math.comb(2 * n, n))
        assert st.smallest_permutation_p(n, n) == pytest.approx(2 / math.comb(2 * n, n))
    assert st.permutation_test([0.9] * 3, [0.95] * 4) == pytest.approx(1 / 35) == st.smallest_permutation_p(3, 4)
    assert st.smallest_permutation_p(2, 2) == pytest.approx(1 / 3)  # 2 + 2 seeds can never reach 0.05
    assert st.smallest_permutation_p(4, 4) < 0.05 < st.smallest_permutation_p(3, 3)
