"""Exact versus approximate, condition by condition: does a network that is only approximately equivariant at its
input size beat the exactly equivariant one, and by how much beyond seed noise?

The input is a sweep's ``results.parquet`` (one row per trial, see ``equisweep.pipeline.sweep.results``). The rules:

- **Only finished trials count**; failed, running, pending and stopped trials are left out (and counted in a note).
- **Arms.** An arm is a network at one input size with its static verdict, its relaxation and its subsampling
  (columns ``relaxation`` and ``subsampling``; an older table without them means ``none`` and ``stride``), named as
  everywhere else (``equisweep.pipeline.train.arms.arm_label``): ``p4 28 exact``, ``p4 29 approx``, ``p4 29 adaptive
  exact``, ``p4 28 rpp``, ``plain CNN 28``. Within one condition, **each arm is its own row**: 27 and 29 around an
  exact 28 give two rows, because pooling them would hide whichever of the two behaves differently.
- **References.** The exact arms without relaxation are the references of their condition. Every other arm (an
  approximate size, a relaxed net) is compared with the reference **of its own input size** when one exists (the
  approximate ``p4 29 approx`` against the adaptive ``p4 29 adaptive exact``: same images, only the sampling grid
  differs), else with the one nearest in size (the smaller on a tie); among references of one size, the one with
  the arm's subsampling, else ``stride``. Column ``reference`` says which rule picked it: ``same size`` or
  ``nearest exact size``.
- **The plain CNN.** A trivial group (``z2``, ``c1``; any group the caller adds to ``exclude_groups``) is neither
  exact nor approximate (its ``exact`` is None; older tables say True), so it never enters a test. Its trials that
  match a compared condition (all condition columns but ``group``) appear as **reference rows**: its accuracy, no
  difference, no p-value, verdict ``reference``. ``group`` is a condition column only when several equivariant
  groups remain.
- **Conditions.** ``condition_columns`` picks the setting columns that vary across the remaining finished trials
  (``train_symmetry``, ``group``, ``model``, ``lr``, any grid axis, ...). Never a condition: ``input_size``,
  ``relaxation`` and ``subsampling`` (they define the arms), ``seed`` (the replicates), ``exact``, identity and
  bookkeeping columns (``trial_id``, ``trial_name``, ``cell``, ``status``, ``error``, ``attempts``, ``run_name``,
  ``data_dir``, ``trial_seconds``), metrics (``val_acc``, ``test_acc_*``, ``eq_error``, ``eq_error/<layer>``, ...),
  columns the caller names in ``ignore``, and columns that vary *inside* one grid cell (hyperparameters an Optuna search
  sampled): those are pooled, and a note says that their spread then includes the search, not only seed noise. Cell ids
  are per sweep: to judge several sweeps' tables together, give each its own cell ids, or drop ``cell`` (which turns
  this rule off).
- **Test.** Per condition, compared arm and report metric: Welch's t-test (``scipy.stats.ttest_ind(equal_var=False)``)
  of the arm against its reference, and the confidence interval of ``diff = arm_mean - exact_mean`` from Welch's t with
  Welch–Satterthwaite degrees of freedom. The p-values of all tested rows are adjusted together with Holm–Bonferroni; a
  row says ``<arm> wins``/``exact wins`` (by the sign of ``diff``) when its adjusted p is below ``alpha``,
  ``inconclusive`` otherwise, where ``<arm>`` is ``approx`` for an approximate size and the relaxation for a relaxed net
  (``rpp wins``, ``relaxed wins``, ``partial wins``): no difference was shown, which is not the same as no difference.
  The interval is not adjusted: with many rows a 95 % interval can exclude 0 while the row is still inconclusive.
- **Power.** Each tested row also says what these seeds could have shown: ``detectable``, the smallest difference
  detected with 80 % power, and ``seeds_needed``, the seeds per arm (equal arms) that would detect the observed
  ``diff`` with 80 % power. Both use the level ``alpha / m``, m the number of tested rows: Holm's first, strictest
  step, so they hold whatever the other rows show (conservative). Both come from the power of Welch's test itself
  (not a normal approximation, not the pooled t-test, which overstate it with few seeds) at the arms' pooled
  sample std: the noncentral t distribution averaged over Welch's random degrees of freedom (see ``power``).
  ``seeds_needed`` is infinite when the observed difference is exactly 0 (no number of seeds detects it) and NaN
  for an untested row (the spread is unknown).
- **No test** (verdict ``inconclusive``, p, interval and power NaN, means still reported, the reason in ``note``)
  when an arm has fewer than two seeds with the metric (its spread cannot be estimated), or when neither arm varies
  across seeds beyond float32 rounding (the t statistic is 0/0 or ±inf: a "certain" difference would only reflect
  an evaluation that is deterministic in the seed, not evidence beyond seed noise).
- A condition without a reference arm, or with nothing but references, is skipped and listed in
  ``Verdicts.skipped``.
- ``arm_eq_error`` and ``exact_eq_error``: the mean measured output equivariance error (``eq_error``) of each side
  after training, where the table has it: how far the arm broke its symmetry (``relaxation_gain`` plots it).

Accuracies stay fractions in the table; ``to_markdown`` and ``summary_paragraph`` speak in accuracy points
(fraction x 100). This module imports no training code: pandas, numpy and scipy only (and the arms' names).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize, special, stats

from equisweep.pipeline.sweep.results import SCALAR_METRICS
from equisweep.pipeline.train import metrics as m
from equisweep.pipeline.train.arms import NO_RELAXATION, STRIDE, TRIVIAL_GROUPS, arm_label, is_trivial

REPORT_METRICS: Mapping[str, str] = MappingProxyType({
    m.TEST_ACC_UPRIGHT: "upright",
    m.TEST_ACC_ORBIT: "orbit",
    m.TEST_ACC_MEAN_ANGLES: "mean over angles",
    m.TEST_ACC_MIN_ANGLES: "min over angles",
})
EXCLUDED_GROUPS = tuple(sorted(TRIVIAL_GROUPS))
APPROX_WINS, EXACT_WINS, INCONCLUSIVE, REFERENCE = "approx wins", "exact wins", "inconclusive", "reference"
POWER = 0.8  # the power at which ``detectable`` and ``seeds_needed`` are computed
_NODES = 48  # Gauss–Jacobi nodes for the power's average over Welch's degrees of freedom
_LARGE_ARM = 1000  # seeds per arm beyond which Welch's degrees of freedom are taken as 2n - 2
ALL_TRIALS = "all trials"  # the condition label when no setting varies
REGIME = "train_symmetry"

_IDENTITY = frozenset({"trial_id", "trial_name", "cell", "status", "error", "attempts", "run_name", "data_dir",
                       "trial_seconds", "started_at"})
_METRICS = frozenset({*SCALAR_METRICS, m.TRAIN_ACC, m.BEST_CHECKPOINT})
NOT_SETTINGS = _IDENTITY | _METRICS | {m.EXACT}  # with m.PER_LAYER_PREFIXES: every column that is no setting
ARM_DEFAULTS: Mapping[str, str] = MappingProxyType({"relaxation": NO_RELAXATION, "subsampling": STRIDE})
NOT_CONDITIONS = NOT_SETTINGS | {"input_size", "seed", *ARM_DEFAULTS}
SAME_SIZE, NEAREST_SIZE = "same size", "nearest exact size"  # which rule picked a row's reference
_ARM_COLUMNS = ["arm", "input_size", *ARM_DEFAULTS, m.EXACT, "exact_arm", "reference"]
_STAT_COLUMNS = ["arm_mean", "arm_std", "arm_n", "exact_mean", "exact_std", "exact_n", "diff", "ci_low", "ci_high",
                 "p_value", "p_adjusted", "detectable", "seeds_needed", "verdict", "note", "arm_eq_error",
                 "exact_eq_error"]
_GAUSSIAN = re.compile(r"^gaussian\((-?[0-9.]+),([0-9.]+)\)$")


@dataclass(frozen=True)
class Verdicts:
    """What ``verdict_table`` returns.

    ``table``: one row per condition x arm x report metric, in that order (conditions sorted, training regimes in
    ``regime_order``; approximate arms by input size, then relaxed arms by relaxation and size, then the plain
    CNN's reference rows), with the columns ``<condition columns>..., condition, metric, label, arm, input_size,
    relaxation, subsampling, exact, exact_arm, reference, arm_mean, arm_std, arm_n, exact_mean, exact_std, exact_n,
    diff, ci_low, ci_high, p_value, p_adjusted, detectable, seeds_needed, verdict, note, arm_eq_error,
    exact_eq_error`` (accuracies as fractions; ``condition`` is a label such as ``"train_symmetry=none, lr=0.01"``,
    or ``"all trials"`` when nothing varies; ``metric`` is the column name and ``label`` its short name; ``arm`` is
    the row's network, ``exact_arm`` the reference it is compared with and ``reference`` the rule that picked it,
    both empty for a plain-CNN reference row, whose ``exact`` is None; ``note`` says why a row was not tested, else
    it is empty).
    ``conditions``: the condition columns, in table order. ``skipped``: one line per condition that had finished
    trials of references only or of no reference. ``notes``: what was left out or pooled and why. ``alpha``,
    ``confidence``: as asked; ``level``: the per-test level of the power columns (``alpha / m``, NaN without tests).
    """

    table: pd.DataFrame
    conditions: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    alpha: float = 0.05
    confidence: float = 0.95
    level: float = math.nan


def gaussian_params(regime: str) -> tuple[float, float] | None:
    """``"gaussian(45,20)"`` -> ``(45.0, 20.0)`` (mean, std in degrees); any other regime -> None."""
    match = _GAUSSIAN.match(str(regime).strip().lower().replace(" ", ""))
    return (float(match.group(1)), float(match.group(2))) if match else None


def regime_order(regime: str) -> tuple:
    """Sort key: none, flip, Gaussian (by std, then mean), c4, d4, uniform, then anything else by name."""
    params = gaussian_params(regime)
    if params is not None:
        return (2, params[1], params[0], "")
    rank = {"none": 0, "flip": 1, "c4": 3, "d4": 4, "uniform": 5}.get(str(regime), 6)
    return (rank, 0.0, 0.0, str(regime))


def without_trivial_exactness(results: pd.DataFrame) -> pd.DataFrame:
    """``results`` with ``exact`` None (not applicable) for trivial groups, whatever an older table says."""
    if m.EXACT not in results.columns or "group" not in results.columns:
        return results
    exact = results[m.EXACT].astype(object)
    return results.assign(**{m.EXACT: exact.where(~results["group"].map(is_trivial), None)})


def condition_columns(results: pd.DataFrame, *, exclude_groups: Iterable[str] = EXCLUDED_GROUPS,
                      ignore: Iterable[str] = ()) -> list[str]:
    """The setting columns that vary across the finished trials of the compared groups, in table order; see the
    module docstring for what never counts (``input_size``, ``seed``, ``exact``, identity, metrics, searched)."""
    frame = _comparable(results, exclude_groups)
    return [column for column in _varying(frame, ignore) if column not in _searched(frame, [column])]


def verdict_table(results: pd.DataFrame, alpha: float = 0.05, *, exclude_groups: Iterable[str] = EXCLUDED_GROUPS,
                  ignore: Iterable[str] = (), confidence: float = 0.95) -> Verdicts:
    """Each arm against its exact reference per condition and report metric: means, spreads, Welch's test,
    Holm-adjusted verdicts, power; the plain CNN as reference rows.

    ``results``: a sweep's results table. ``alpha``: the level for the Holm-adjusted p-values. ``exclude_groups``:
    groups kept out of every test (the trivial groups by default). ``ignore``: setting columns to pool over instead
    of comparing within. ``confidence``: the level of the interval of the difference.
    """
    if not 0 < alpha < 1 or not 0 < confidence < 1:
        raise ValueError(f"alpha and confidence must lie in (0, 1), got {alpha} and {confidence}")
    exclude_groups = set(exclude_groups)
    notes = _left_out(results, exclude_groups)
    frame = _comparable(results, exclude_groups)
    references = _finished(results)
    references = references[references["group"].isin(exclude_groups)] if "group" in references else references[:0]
    varying = _varying(frame, ignore)
    searched = _searched(frame, varying)
    conditions = [column for column in varying if column not in searched]
    if searched:
        verb = "varies" if len(searched) == 1 else "vary"
        notes.append(f"{', '.join(searched)} {verb} inside grid cells (searched hyperparameters): trials are pooled "
                     "over them, so each arm's spread includes the search, not only seed noise.")
    metrics = [metric for metric in REPORT_METRICS if metric in frame.columns]
    missing = [REPORT_METRICS[metric] for metric in REPORT_METRICS if metric not in frame.columns]
    if missing:
        notes.append(f"no column for {', '.join(missing)} in the results: not reported.")

    rows, skipped = [], []
    for key, group in _by_condition(frame, conditions):
        label = _condition_label(conditions, key)
        arms = _by_arm(group)
        exact = [arm for arm in arms if _is_reference(arm)]
        compared = [arm for arm in arms if not _is_reference(arm)]
        if not exact or not compared:
            skipped.append(f"{label}: only {'exact' if exact else 'approximate'} trials finished "
                           f"({len(group)}); nothing to compare.")
            continue
        head = {**dict(zip(conditions, key)), "condition": label}
        name = _group_name(group)
        for arm_key, arm in compared:
            (ref_size, _, _, ref_subsampling), reference = _reference_of(arm_key, exact)
            arm_row = {"arm": _label(name, arm_key), "input_size": arm_key[0], "relaxation": arm_key[2],
                       "subsampling": arm_key[3], m.EXACT: arm_key[1],
                       "exact_arm": arm_label(name, ref_size, True, subsampling=ref_subsampling),
                       "reference": SAME_SIZE if ref_size == arm_key[0] else NEAREST_SIZE,
                       "arm_eq_error": _eq_error(arm), "exact_eq_error": _eq_error(reference)}
            rows += [{**head, "metric": metric, "label": REPORT_METRICS[metric], **arm_row,
                      **compare(reference[metric].to_numpy(float), arm[metric].to_numpy(float), confidence)}
                     for metric in metrics]
        plain = _matching(references, conditions, key)
        for size, arm in _by_size(plain):
            arm_row = {"arm": arm_label(_group_name(arm), size, None), "input_size": size, **ARM_DEFAULTS,
                       m.EXACT: None, "exact_arm": "", "reference": "", "arm_eq_error": _eq_error(arm)}
            rows += [{**head, "metric": metric, "label": REPORT_METRICS[metric], **_reference(arm[metric]), **arm_row}
                     for metric in metrics if metric in arm.columns]
    table = pd.DataFrame(rows, columns=[*conditions, "condition", "metric", "label", *_ARM_COLUMNS, *_STAT_COLUMNS])
    table[m.EXACT] = table[m.EXACT].astype(object)
    table["p_adjusted"] = holm(table["p_value"].to_numpy(float))
    tested = table["p_adjusted"].notna()
    level = alpha / int(tested.sum()) if tested.any() else math.nan
    table.loc[tested, "detectable"] = [
        detectable_difference(row.exact_n, row.arm_n, _pooled_std(row), level) for row in table[tested].itertuples()]
    table.loc[tested, "seeds_needed"] = [
        seeds_needed(row.diff, _pooled_std(row), level) for row in table[tested].itertuples()]
    significant = tested & (table["p_adjusted"] < alpha)
    wins = [arm_wins(relaxation) for relaxation in table["relaxation"]]
    table["verdict"] = np.where(table["exact_arm"] == "", REFERENCE, np.where(~significant, INCONCLUSIVE, np.where(
        table["diff"] > 0, wins, EXACT_WINS)))
    return Verdicts(table, conditions, skipped, notes, alpha, confidence, level)


def arm_wins(relaxation: str) -> str:
    """The verdict word of an arm that beats its reference: ``approx wins`` for an approximate size, ``<relaxation>
    wins`` (``rpp wins``) for a relaxed net."""
    return APPROX_WINS if relaxation == NO_RELAXATION else f"{relaxation} wins"


def compare(exact: np.ndarray, approx: np.ndarray, confidence: float = 0.95) -> dict[str, Any]:
    """One row's statistics: arm means, sample stds (ddof 1) and counts (NaNs dropped), ``diff`` = approx - exact,
    Welch's interval and p-value; NaN p and interval with the reason in ``note`` when there is no test."""
    exact, approx = exact[~np.isnan(exact)], approx[~np.isnan(approx)]
    n1, n2 = len(exact), len(approx)
    mean1, mean2 = _mean(exact), _mean(approx)
    sd1, sd2 = _std(exact), _std(approx)
    row = {"exact_mean": mean1, "exact_std": sd1, "exact_n": n1, "arm_mean": mean2, "arm_std": sd2, "arm_n": n2,
           "diff": mean2 - mean1, "ci_low": math.nan, "ci_high": math.nan, "p_value": math.nan,
           "p_adjusted": math.nan, "detectable": math.nan, "seeds_needed": math.nan, "verdict": INCONCLUSIVE,
           "note": ""}
    if n1 < 2 or n2 < 2:
        row["note"] = _few_seeds(n1, n2)
        return row
    if sd1 == sd2 == 0:
        row["note"] = "neither arm varies across seeds, so the t-test is undefined; means only"
        return row
    var1, var2 = sd1**2 / n1, sd2**2 / n2
    df = (var1 + var2) ** 2 / (var1**2 / (n1 - 1) + var2**2 / (n2 - 1))
    half = stats.t.ppf((1 + confidence) / 2, df) * math.sqrt(var1 + var2)
    row.update(ci_low=row["diff"] - half, ci_high=row["diff"] + half,
               p_value=float(stats.ttest_ind(approx, exact, equal_var=False).pvalue))
    return row


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


def more_seeds(verdicts: Verdicts) -> tuple[float, pd.DataFrame]:
    """How many more seeds per arm the sweep needs so that every inconclusive tested row would detect its observed
    difference (80 % power): the largest ``seeds_needed - min(arm_n, exact_n)`` over those rows (0 when none is
    short, infinite when an observed difference is exactly 0), and the row that needs it."""
    table = verdicts.table
    rows = table[(table["verdict"] == INCONCLUSIVE) & table["p_value"].notna()]
    if rows.empty:
        return 0.0, rows
    short = rows["seeds_needed"] - np.minimum(rows["arm_n"], rows["exact_n"])
    worst = short.idxmax()
    return max(0.0, float(short[worst])), rows.loc[[worst]]


def display_table(verdicts: Verdicts) -> pd.DataFrame:
    """The verdict table as the report shows it (strings), in table order: condition columns, metric, the arm and
    its mean ± std (n), the exact arm (with the rule that picked it: same size or nearest exact size) and its mean ±
    std (n), diff [CI] and p (adjusted), the detectable difference and the seeds per arm to detect ``diff`` (accuracy
    points), verdict. A reference row leaves the exact side empty.
    ``attrs["right"]`` names the columns of numbers (right-aligned)."""
    level = f"{verdicts.confidence * 100:g}%"
    numbers = ["mean ± std (n)", "exact mean ± std (n)", f"diff [{level} CI] (points)", "p (adj.)",
               "detectable (points)", "seeds/arm for diff"]
    header = [*verdicts.conditions, "metric", "arm", numbers[0], "exact arm", *numbers[1:], "verdict"]
    rows = []
    for row in verdicts.table.itertuples(index=False):
        cells = [_format_value(value) for value in row[:len(verdicts.conditions)]]
        arm = _arm(row.arm_mean, row.arm_std, row.arm_n)
        if not row.exact_arm:
            rows.append([*cells, row.label, row.arm, arm, "", "", "", "", "", "", row.verdict])
            continue
        diff = f"{_points(row.diff, signed=True)}"
        if not math.isnan(row.ci_low):
            diff += f" [{_points(row.ci_low, signed=True)}, {_points(row.ci_high, signed=True)}]"
        rows.append([*cells, row.label, row.arm, arm, f"{row.exact_arm} ({row.reference})",
                     _arm(row.exact_mean, row.exact_std, row.exact_n),
                     diff, _p(row.p_adjusted), _points(row.detectable), _seeds(row.seeds_needed), row.verdict])
    frame = pd.DataFrame(rows, columns=header)
    frame.attrs["right"] = numbers
    return frame


def markdown_table(frame: pd.DataFrame, right: Iterable[str] = ()) -> str:
    """A pipe table of ``frame`` (hand-formatted, no ``tabulate``); columns in ``right`` align right."""
    right = set(right)
    lines = [_md_row(list(frame.columns)), _md_row(["---:" if c in right else "---" for c in frame.columns])]
    lines += [_md_row([_format_value(v) for v in row]) for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def to_markdown(verdicts: Verdicts) -> str:
    """The verdict table as Markdown (numbers right-aligned)."""
    table = display_table(verdicts)
    return markdown_table(table, right=table.attrs["right"])


def summary_paragraph(verdicts: Verdicts) -> str:
    """Plain English from the table: the count of each verdict; per condition, which arms win, lose or tie against
    which reference; per condition and arm, which metrics favour it or its reference and by how many accuracy points
    (with the interval), which are inconclusive and what these seeds could detect, which could not be tested and
    why; the plain CNN's accuracy; how many more seeds the sweep needs."""
    table = verdicts.table
    compared = table[table["verdict"] != REFERENCE]
    level = f"{verdicts.confidence * 100:g} %"
    sentences = []
    if compared.empty:
        sentences.append("No condition has finished trials of both an exact reference and another arm, so "
                         "there is nothing to compare.")
    else:
        counts = compared["verdict"].value_counts()
        tested = int(compared["p_value"].notna().sum())
        untested = len(compared) - tested
        what = "Approximate" if (compared["relaxation"] == NO_RELAXATION).all() else "Each arm"
        if tested:
            words = [APPROX_WINS, *sorted({arm_wins(r) for r in compared["relaxation"]} - {APPROX_WINS}), EXACT_WINS,
                     INCONCLUSIVE]
            lead = (f"{what} minus exact accuracy, per condition, arm and metric ({tested} Welch t-tests over "
                    f"seeds, Holm-adjusted at alpha = {verdicts.alpha:g}): "
                    + ", ".join(f"{counts.get(word, 0)} {word}" for word in words))
            if untested:
                lead += f" ({untested} of them not tested)"
        else:
            lead = (f"{what} minus exact accuracy, per condition, arm and metric: none of the {len(compared)} "
                    f"comparisons could be tested, so all are {INCONCLUSIVE}")
        sentences.append(lead + ".")
        for label, group in compared.groupby("condition", sort=False):
            sentences.append(_outcome_sentence(label, group))
        for (label, _), group in compared.groupby(["condition", "arm"], sort=False):
            sentences.append(_arm_sentence(label, group, level))
        sentences.append(_seeds_sentence(verdicts))
    for (label, arm), group in table[table["verdict"] == REFERENCE].groupby(["condition", "arm"], sort=False):
        where = "over all trials" if label == ALL_TRIALS else f"under {label}"
        sentences.append(f"Reference, not tested: the {arm} ({_count(int(group['arm_n'].max()), 'seed')}) reaches "
                         + _join(f"{row.arm_mean * 100:.1f} points {row.label}" for row in group.itertuples())
                         + f" {where}.")
    sentences += verdicts.skipped
    sentences += verdicts.notes
    return " ".join(sentence for sentence in sentences if sentence)


# ---------------------------------------------------------------------------------------------------------------
# internals


def _finished(results: pd.DataFrame) -> pd.DataFrame:
    return results[results["status"] == "finished"] if "status" in results.columns else results


def with_arm_defaults(results: pd.DataFrame) -> pd.DataFrame:
    """``results`` with ``relaxation`` and ``subsampling`` columns, missing values (an older table, a run that
    predates them) read as the defaults ``none`` and ``stride``."""
    return results.assign(**{column: results[column].astype(object).where(results[column].notna(), default)
                             if column in results.columns else default for column, default in ARM_DEFAULTS.items()})


def _comparable(results: pd.DataFrame, exclude_groups: Iterable[str]) -> pd.DataFrame:
    """Finished trials of the compared groups with a known ``exact`` flag (as a plain bool column)."""
    frame = with_arm_defaults(_finished(results))
    excluded = set(exclude_groups)
    if excluded and "group" in frame.columns:
        frame = frame[~frame["group"].isin(excluded)]
    if m.EXACT not in frame.columns:
        raise ValueError(f"results: no {m.EXACT!r} column; pass a sweep's results table")
    frame = frame[frame[m.EXACT].notna()].copy()
    frame[m.EXACT] = frame[m.EXACT].astype(bool)
    return frame


def _left_out(results: pd.DataFrame, exclude_groups: Iterable[str]) -> list[str]:
    notes = []
    if "status" in results.columns:
        others = results.loc[results["status"] != "finished", "status"].value_counts()
        if len(others):
            notes.append(f"Left out {int(others.sum())} trials that did not finish ("
                         + ", ".join(f"{count} {status}" for status, count in others.items()) + ").")
        results = results[results["status"] == "finished"]
    excluded = sorted(set(exclude_groups))
    if excluded and "group" in results.columns:
        dropped = results["group"].isin(excluded)
        if dropped.any():
            names = sorted(results.loc[dropped, "group"].unique())
            what = (f"plain CNN ({', '.join(names)}) trials ({int(dropped.sum())}) are never tested: a plain CNN is "
                    "not rotation-equivariant at any size, so exact and approximate mean nothing for it"
                    if all(map(is_trivial, names)) else
                    f"{', '.join(names)} trials ({int(dropped.sum())}) are never tested (excluded groups)")
            notes.append(f"The {what}; they appear as reference rows where their settings match a condition.")
        results = results[~dropped]
    if m.EXACT in results.columns and results[m.EXACT].isna().any():
        notes.append(f"Left out {_count(int(results[m.EXACT].isna().sum()), 'finished trial')} without a static "
                     "exact flag.")
    return notes


def _varying(frame: pd.DataFrame, ignore: Iterable[str]) -> list[str]:
    skip = NOT_CONDITIONS | set(ignore)
    return [column for column in frame.columns
            if column not in skip and not column.startswith(m.PER_LAYER_PREFIXES)
            and frame[column].map(_norm).nunique(dropna=False) > 1]


def _searched(frame: pd.DataFrame, columns: list[str]) -> list[str]:
    """The columns that vary inside one grid cell: sampled by a search, not set by the grid."""
    if "cell" not in frame.columns or frame["cell"].isna().all():
        return []
    cells = frame[frame["cell"].notna()]
    return [column for column in columns
            if (cells[column].map(_norm).groupby(cells["cell"]).nunique(dropna=False) > 1).any()]


def _norm(value: Any) -> Any:
    """A hashable, NaN-free form of one cell of a condition column (None for missing)."""
    if value is None or (isinstance(value, float | np.floating) and math.isnan(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def _keys(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """Each row's normalised values of ``columns``, as a tuple."""
    return pd.Series([tuple(_norm(v) for v in values) for values in zip(*(frame[c] for c in columns))]
                     if columns else [()] * len(frame), index=frame.index, dtype=object)


def _by_condition(frame: pd.DataFrame, conditions: list[str]) -> list[tuple[tuple[Any, ...], pd.DataFrame]]:
    """(condition values, trials) per condition present, sorted by the values (regimes in ``regime_order``)."""
    groups: dict[tuple[Any, ...], list[Any]] = {}
    for index, key in _keys(frame, conditions).items():
        groups.setdefault(key, []).append(index)
    ordered = sorted(groups, key=lambda key: tuple(_sort_key(c, v) for c, v in zip(conditions, key)))
    return [(key, frame.loc[groups[key]]) for key in ordered]


def _matching(frame: pd.DataFrame, conditions: list[str], key: tuple[Any, ...]) -> pd.DataFrame:
    """The rows of ``frame`` in the condition ``key``, judged on every condition column but ``group``."""
    pairs = [(c, v) for c, v in zip(conditions, key) if c != "group"]
    if any(c not in frame.columns for c, _ in pairs):
        return frame[:0]
    return frame[_keys(frame, [c for c, _ in pairs]) == tuple(v for _, v in pairs)]


def _by_size(frame: pd.DataFrame) -> list[tuple[Any, pd.DataFrame]]:
    """(input size, trials) per size, smallest first."""
    sizes = frame["input_size"].map(_norm)
    return [(size, frame[sizes == size]) for size in sorted(sizes.dropna().unique())]


ArmKey = tuple[Any, bool, str, str]  # (input size, exact, relaxation, subsampling)


def _by_arm(frame: pd.DataFrame) -> list[tuple[ArmKey, pd.DataFrame]]:
    """(arm key, trials) per arm: approximate sizes first, then relaxed nets by relaxation, each by size, default
    subsampling first."""
    keys = pd.Series(list(zip(frame["input_size"].map(_norm), frame[m.EXACT], frame["relaxation"].astype(str),
                              frame["subsampling"].astype(str))), index=frame.index, dtype=object)
    order = sorted(set(keys), key=lambda k: (k[2] != NO_RELAXATION, k[2], k[0], k[3] != STRIDE, k[3]))
    return [(key, frame[keys == key]) for key in order]


def _is_reference(arm: tuple[ArmKey, pd.DataFrame]) -> bool:
    """Exact and not relaxed: what the other arms of a condition are measured against."""
    (_, exact, relaxation, _), _ = arm
    return bool(exact) and relaxation == NO_RELAXATION


def _reference_of(key: ArmKey, references: list[tuple[ArmKey, pd.DataFrame]]) -> tuple[ArmKey, pd.DataFrame]:
    """The reference of the arm ``key``: of its own size if there is one, else of the nearest size (the smaller on a
    tie); among those, the one with the arm's subsampling, else ``stride``."""
    size = _nearest(key[0], sorted({ref[0] for ref, _ in references}))
    return min(((ref, trials) for ref, trials in references if ref[0] == size),
               key=lambda item: (item[0][3] != key[3], item[0][3] != STRIDE, item[0][3]))


def _label(group: str, key: ArmKey) -> str:
    size, exact, relaxation, subsampling = key
    return arm_label(group, size, exact, relaxation, subsampling)


def _eq_error(trials: pd.DataFrame) -> float:
    """The mean measured output equivariance error of ``trials``; NaN where the table has none."""
    return float(trials[m.EQ_ERROR].mean()) if m.EQ_ERROR in trials.columns else math.nan


def _nearest(size: Any, sizes: list[Any]) -> Any:
    return min(sizes, key=lambda other: (abs(other - size), other)) if sizes else None


def _group_name(frame: pd.DataFrame) -> str:
    return "/".join(sorted(frame["group"].astype(str).unique())) if "group" in frame.columns else "?"


def _reference(values: pd.Series) -> dict[str, Any]:
    """A reference row's statistics: the arm's own, nothing compared."""
    values = values.to_numpy(float)
    values = values[~np.isnan(values)]
    row = dict.fromkeys(_STAT_COLUMNS, math.nan)
    row.update(arm_mean=_mean(values), arm_std=_std(values), arm_n=len(values), exact_n=0, verdict=REFERENCE,
               note="")
    return row


def _sort_key(column: str, value: Any) -> tuple[int, Any]:
    if value is None:
        return (2, 0)
    if column == REGIME:
        return (1, regime_order(value))
    if isinstance(value, bool | int | float):
        return (0, value)
    return (1, str(value))


def _condition_label(conditions: list[str], key: tuple[Any, ...]) -> str:
    return ", ".join(f"{c}={_format_value(v)}" for c, v in zip(conditions, key)) or ALL_TRIALS


def _format_value(value: Any) -> str:
    value = _norm(value)
    if value is None:
        return "unset"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _pooled_std(row: Any) -> float:
    n1, n2 = row.exact_n, row.arm_n
    return math.sqrt(((n1 - 1) * row.exact_std**2 + (n2 - 1) * row.arm_std**2) / (n1 + n2 - 2))


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if len(values) else math.nan


def _std(values: np.ndarray) -> float:
    """The sample std (ddof 1), NaN for fewer than 2 values; exactly 0 when the values agree to float32 resolution:
    the metrics are computed in float32, so a smaller spread (0.5 against 0.49999997, say) is rounding, not seed
    noise."""
    if len(values) < 2:
        return math.nan
    resolution = 4 * np.finfo(np.float32).eps * float(np.max(np.abs(values)))
    return 0.0 if np.ptp(values) <= resolution else float(np.std(values, ddof=1))


def _few_seeds(n_exact: int, n_approx: int) -> str:
    if n_exact == n_approx == 1:
        return "with one seed per arm there is no test; means only"
    if n_exact == 0 or n_approx == 0:
        return f"the {'exact' if n_exact == 0 else 'approximate'} arm has no value for this metric; no test"
    arm = "exact" if n_exact < 2 else "approximate"
    return f"with one seed in the {arm} arm its spread is unknown, so there is no test; means only"


def _points(fraction: float, signed: bool = False) -> str:
    if math.isnan(fraction):
        return "–"
    return f"{fraction * 100:+.2f}" if signed else f"{fraction * 100:.2f}"


def _arm(mean: float, std: float, n: int) -> str:
    if math.isnan(std):
        return f"{_points(mean)} ({n})"
    return f"{_points(mean)} ± {_points(std)} ({n})"


def _p(p: float) -> str:
    if math.isnan(p):
        return "–"
    return "<1e-4" if p < 1e-4 else f"{p:.2g}"


def _seeds(n: float) -> str:
    return "–" if math.isnan(n) else "∞" if math.isinf(n) else f"{n:.0f}"


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"


def _outcome_sentence(label: str, group: pd.DataFrame) -> str:
    """``Under <condition>: p4 28 rpp wins (upright, orbit) and p4 28 partial ties against p4 28 exact (same size);
    ...``: per reference, each arm wins (only it wins on some metric), loses (only its reference does), trades
    (each wins on some metric), ties (tested, and no metric shows a difference) or is not tested (no metric could be:
    its means stand alone, and a +50-point gap is no tie)."""
    parts = []
    for (reference, rule), against in group.groupby(["exact_arm", "reference"], sort=False):
        outcomes = []
        for arm, rows in against.groupby("arm", sort=False):
            won = list(rows.loc[rows["verdict"] == arm_wins(rows["relaxation"].iloc[0]), "label"])
            lost = list(rows.loc[rows["verdict"] == EXACT_WINS, "label"])
            if won and lost:
                outcomes.append(f"{arm} trades (wins on {', '.join(won)}, loses on {', '.join(lost)})")
            elif won or lost:
                outcomes.append(f"{arm} {'wins' if won else 'loses'} ({', '.join(won or lost)})")
            elif rows["p_value"].isna().all():
                outcomes.append(f"{arm} is not tested (means only)")
            else:
                outcomes.append(f"{arm} ties ({INCONCLUSIVE} on every metric)")
        parts.append(f"{_join(outcomes)} against {reference} ({rule})")
    where = "Over all trials" if label == ALL_TRIALS else f"Under {label}"
    return f"{where}: {'; '.join(parts)}."


def _arm_sentence(label: str, group: pd.DataFrame, level: str) -> str:
    first = group.iloc[0]
    arms = (f"{first.arm} ({_count(int(group['arm_n'].max()), 'seed')}) vs {first.exact_arm} "
            f"({_count(int(group['exact_n'].max()), 'seed')}, {first.reference})")
    relaxed = first.relaxation != NO_RELAXATION
    wins = arm_wins(first.relaxation)
    parts = []
    for verdict, who in ((wins, f"the {first.relaxation} network" if relaxed else "the approximate network"),
                         (EXACT_WINS, "the exact network")):
        rows = group[group["verdict"] == verdict]
        if len(rows):
            sign = 1 if verdict == wins else -1
            parts.append(f"{who} is better on " + _join(
                f"{row.label} by {sign * row.diff * 100:.1f} points ({level} CI {sign * _lo(row, sign) * 100:.1f} "
                f"to {sign * _hi(row, sign) * 100:.1f})" for row in rows.itertuples()))
    open_rows = group[(group["verdict"] == INCONCLUSIVE) & group["p_value"].notna()]
    if len(open_rows):
        parts.append("no difference is shown on " + _join(
            f"{row.label} ({row.diff * 100:+.1f} points, CI {row.ci_low * 100:+.1f} to {row.ci_high * 100:+.1f}; "
            f"these seeds detect {row.detectable * 100:.1f} points)" for row in open_rows.itertuples()))
    untested = group[group["p_value"].isna()]
    for note, rows in untested.groupby("note", sort=False):
        parts.append(f"{note}: {first.relaxation if relaxed else 'approximate'} minus exact is " + _join(
            f"{row.diff * 100:+.1f} points on {row.label}" for row in rows.itertuples()))
    where = "Over all trials" if label == ALL_TRIALS else f"Under {label}"
    return f"{where}, {arms}: {'; '.join(parts)}."


def _seeds_sentence(verdicts: Verdicts) -> str:
    more, worst = more_seeds(verdicts)
    if worst.empty:
        return ""
    row = next(worst.itertuples())
    where = "" if row.condition == ALL_TRIALS else f" under {row.condition}"
    return (f"To detect each inconclusive difference observed here with {POWER:.0%} power (per-test level "
            f"{verdicts.level:.2g}), the sweep needs {_seeds(more)} more seeds per arm: {_seeds(row.seeds_needed)} "
            f"per arm for {row.arm} vs {row.exact_arm} on {row.label}{where} ({row.diff * 100:+.2f} points)"
            + (", whose observed difference is exactly 0" if math.isinf(more) else "") + ".")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _lo(row: Any, sign: int) -> float:
    return row.ci_low if sign > 0 else row.ci_high


def _hi(row: Any, sign: int) -> float:
    return row.ci_high if sign > 0 else row.ci_low


def _join(items: Iterable[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
