"""Exact versus approximate, condition by condition: does a network that is only approximately equivariant at its
input size beat the exactly equivariant one, and by how much beyond seed noise?

The input is a sweep's ``results.parquet`` (one row per trial, see ``equisweep.pipeline.sweep.results``). The rules:

- **Only finished trials count**; failed, running, pending and stopped trials are left out (and counted in a note).
- **Arms and references** as ``equisweep.pipeline.report.arms`` defines them (``p4 28 exact``, ``p4 29 approx``,
  ``p4 29 adaptive exact``, ``p4 28 rpp``, ``plain CNN 28``, ``p4 29 approx average``, ``plain CNN 28
  eq_penalty=0.1``). Within one condition, **each arm is its own row**: 27
  and 29 around an exact 28 give two rows, because pooling them would hide whichever of the two behaves differently.
  The approximate ``p4 29 approx`` is measured against the adaptive ``p4 29 adaptive exact`` (same images, only the
  sampling grid differs) and, in a second row, against the paper's pair, the exact net of the nearest other size
  (``p4 28 exact``); column ``reference`` says which rule picked the reference: ``same size``, ``paper's pair`` or,
  for an arm without a same-size reference, ``nearest exact size``.
- **The plain CNN.** A trivial group (``z2``, ``c1``; any group the caller adds to ``exclude_groups``) is neither
  exact nor approximate (its ``exact`` is None; older tables say True), so it never enters a test. Its trials that
  match a compared condition (all condition columns but ``group``) appear as **reference rows**: its accuracy, no
  difference, no p-value, verdict ``reference``. A plain CNN behind an invariance wrapper or trained with an
  equivariance penalty is a **family arm**, compared like any other under the group its family acts with
  (``arms.judged_group``: p4 by default). ``group`` is a condition column only when several judged groups remain.
- **Conditions.** ``condition_columns`` picks the setting columns that vary across the remaining finished trials
  (``train_symmetry``, ``group``, ``model``, ``lr``, any grid axis, ...). Never a condition: ``input_size``,
  ``relaxation``, ``subsampling``, ``invariance``, ``eq_penalty``, ``eq_penalty_kind`` and the methods' options
  (they define the arms), ``seed`` (the replicates), ``exact``, identity and
  bookkeeping columns (``trial_id``, ``trial_name``, ``cell``, ``status``, ``error``, ``attempts``, ``run_name``,
  ``data_dir``, ``trial_seconds``), metrics (``val_acc``, ``test_acc_*``, ``eq_error``, ``eq_error/<layer>``, ...),
  columns the caller names in ``ignore``, and columns that vary *inside* one grid cell (hyperparameters an Optuna search
  sampled): those are pooled, and a note says that their spread then includes the search, not only seed noise. Cell ids
  are per sweep: to judge several sweeps' tables together, give each its own cell ids, or drop ``cell`` (which turns
  this rule off).
- **Test.** Per condition, compared arm, reference and report metric: ``comparison.compare`` (Welch's t-test and
  interval of ``diff = arm_mean - exact_mean``, clipped to [-1, 1]; an exact permutation test where an arm does not
  vary; no test, with the reason in ``note``, where the seeds do not allow one; ``n/a`` where neither arm has the
  metric). The p-values of all tested rows are adjusted together with Holm–Bonferroni; a row says ``<arm>
  wins``/``exact wins`` (by the sign of ``diff``) when its adjusted p is below ``alpha``, ``inconclusive`` otherwise
  (no difference was shown, which is not the same as no difference), where ``<arm>`` is the arm's ``method``:
  ``approx`` for an approximate size, else its relaxation, wrapper and penalty (``rpp wins``, ``average wins``,
  ``eq_penalty wins``). The interval is not adjusted: with many rows
  a 95 % interval can exclude 0 while the row is still inconclusive.
- **Power.** Each row tested by Welch's test also says what these seeds could have shown: ``detectable``, the
  smallest difference detected with 80 % power, and ``seeds_needed``, the seeds per arm (equal arms) that would
  detect the observed ``diff`` with 80 % power, both at the level ``alpha / m`` (m tested rows: Holm's first,
  strictest step, so they hold whatever the other rows show) from the power of Welch's test itself at the arms'
  pooled sample std (``stats.power``). ``seeds_needed`` is infinite when the observed difference is exactly 0.
  Where these seeds detect no difference up to 1 (100 points), ``detectable`` is NaN and ``seeds_to_detect`` gives
  the seeds per arm that would detect one of 1.
- A condition without a reference arm, or with nothing but references, is skipped and listed in
  ``Verdicts.skipped``.
- ``arm_eq_error`` and ``exact_eq_error``: the mean measured output equivariance error (``eq_error``) of each side
  after training, where the table has it: how far the arm broke its symmetry (``relaxation_gain`` plots it).

Accuracies stay fractions in the table; ``equisweep.pipeline.report.text`` speaks in accuracy points (fraction x 100).
This module imports no training code: pandas and numpy (the statistics in ``stats`` and ``comparison``, the arms
in ``arms``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

from equisweep.pipeline import vocabulary as m
from equisweep.pipeline.report import arms
from equisweep.pipeline.report import stats as st
from equisweep.pipeline.report.arms import APPROX, ARM_DEFAULTS, BACKBONE_GROUP, EXCLUDED_GROUPS, REGIME, plain_value
from equisweep.pipeline.report.comparison import INCONCLUSIVE, NOT_APPLICABLE, PERMUTED, SPAN, UNDEFINED, compare

REPORT_METRICS: Mapping[str, str] = MappingProxyType({
    m.TEST_ACC_UPRIGHT: "upright",
    m.TEST_ACC_ORBIT: "orbit",
    m.TEST_ACC_MEAN_ANGLES: "mean over angles",
    m.TEST_ACC_MIN_ANGLES: "min over angles",
})
APPROX_WINS, EXACT_WINS, REFERENCE = "approx wins", "exact wins", "reference"
PAPERS_PAIR = "paper's pair"  # the rule of an approximate arm's second reference: the nearest other exact size
ALL_TRIALS = "all trials"  # the condition label when no setting varies
NOT_CONDITIONS = frozenset({"input_size", "seed", *ARM_DEFAULTS})  # settings that make an arm or a replicate
_ARM_COLUMNS = ["arm", "input_size", *ARM_DEFAULTS, m.EXACT, "method", "exact_arm", "reference"]
_STAT_COLUMNS = ["arm_mean", "arm_std", "arm_n", "exact_mean", "exact_std", "exact_n", "diff", "ci_low", "ci_high",
                 "p_value", "p_adjusted", "detectable", "seeds_to_detect", "seeds_needed", "verdict", "note",
                 "arm_eq_error", "exact_eq_error"]


@dataclass(frozen=True)
class Verdicts:
    """What ``verdict_table`` returns.

    ``table``: one row per condition x arm x reference x report metric, in that order (conditions sorted, training
    regimes in ``regime_order``; approximate arms by input size, then relaxed arms by relaxation and size, then
    wrapped and penalised arms, each against its same-size (else nearest) reference and then the paper's pair, then
    the plain CNN's reference rows), with the columns ``<condition columns>..., condition, metric, label, arm,
    input_size, relaxation, subsampling, invariance, eq_penalty, eq_penalty_kind, exact, method, exact_arm,
    reference, arm_mean, arm_std, arm_n, exact_mean, exact_std, exact_n, diff, ci_low, ci_high, p_value, p_adjusted,
    detectable, seeds_to_detect, seeds_needed, verdict, note, arm_eq_error, exact_eq_error`` (accuracies as
    fractions; ``condition`` is a label such as ``"train_symmetry=none, lr=0.01"``, or ``"all trials"`` when nothing
    varies; ``metric`` is the column name and ``label`` its short name; ``arm`` is the row's network, ``method`` what
    it does besides its size (``arms.Arm.method``: ``approx``, ``rpp``, ``average``, ...), ``exact_arm`` the
    reference it is compared with and ``reference`` the rule that picked it, both empty for a plain-CNN reference
    row, whose ``exact`` is None; ``note`` says why a row was not tested or why its interval means little, else it
    is empty).
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
    references = arms.with_arm_defaults(arms.finished(results))
    references = (references[references["group"].isin(exclude_groups) & ~arms.is_family(references)]
                  if "group" in references else references[:0])
    options = arms.option_columns(frame)
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
    for key, group in by_condition(frame, conditions):
        label = _condition_label(conditions, key)
        head = {**dict(zip(conditions, key)), "condition": label}
        compared = _compared_rows(group, options, metrics, alpha, confidence)
        if compared is None:
            exact = any(arms.is_reference(arm) for arm, _ in arms.by_arm(group, options))
            skipped.append(f"{label}: only {'exact' if exact else 'approximate'} trials finished "
                           f"({len(group)}); nothing to compare.")
            continue
        rows += [{**head, **row} for row in compared + _reference_rows(_matching(references, conditions, key),
                                                                      metrics)]
    table = pd.DataFrame(rows, columns=[*conditions, "condition", "metric", "label", *_ARM_COLUMNS, *_STAT_COLUMNS])
    level = _judge(table, alpha)
    return Verdicts(table, conditions, skipped, notes, alpha, confidence, level)


def _compared_rows(group: pd.DataFrame, options: list[str], metrics: list[str], alpha: float,
                   confidence: float) -> list[dict] | None:
    """One condition's rows of every arm against its reference, per metric; None without a reference or an arm."""
    by_arm = arms.by_arm(group, options)
    exact = [arm for arm in by_arm if arms.is_reference(arm[0])]
    compared = [arm for arm in by_arm if not arms.is_reference(arm[0])]
    if not exact or not compared:
        return None
    rows = []
    for arm, trials in compared:
        rows += [row for reference in _references(arm, exact)
                 for row in _against(arm, trials, reference, metrics, alpha, confidence)]
    return rows


def _references(arm: arms.Arm, exact: list[tuple[arms.Arm, pd.DataFrame]]) -> list[tuple]:
    """The references of ``arm`` as ``(arm, trials, rule)``: its same-size reference, else the nearest; and for an
    approximate arm (no relaxation nor family) with a same-size reference also the paper's pair, the nearest exact
    size besides."""
    first = arms.reference_of(arm, exact)
    others = [(ref, trials) for ref, trials in exact if ref.input_size != arm.input_size]
    if first[2] != arms.SAME_SIZE or arm.method != APPROX or not others:
        return [first]
    return [first, (*arms.reference_of(arm, others)[:2], PAPERS_PAIR)]


def _against(arm: arms.Arm, trials: pd.DataFrame, against: tuple, metrics: list[str], alpha: float,
             confidence: float) -> list[dict]:
    """One arm's rows against one reference ``(arm, trials, rule)``, a row per metric."""
    ref, reference, rule = against
    arm_row = {"arm": arms.label(arm.settings), "input_size": arm.input_size,
               **{column: getattr(arm, column) for column in ARM_DEFAULTS}, m.EXACT: arm.exact, "method": arm.method,
               "exact_arm": arms.label(ref.settings), "reference": rule, "arm_eq_error": _eq_error(trials),
               "exact_eq_error": _eq_error(reference)}
    return [{"metric": metric, "label": REPORT_METRICS[metric], **arm_row,
             **compare(reference[metric].to_numpy(float), trials[metric].to_numpy(float), confidence, alpha)}
            for metric in metrics]


def _reference_rows(plain: pd.DataFrame, metrics: list[str]) -> list[dict]:
    """The plain CNN's rows of one condition: its own statistics, nothing compared."""
    rows = []
    for size, arm in _by_size(plain):
        arm_row = {"arm": arms.label({"group": _group_name(arm), "input_size": size, m.EXACT: None}),
                   "input_size": size, **ARM_DEFAULTS, m.EXACT: None, "method": "", "exact_arm": "", "reference": "",
                   "arm_eq_error": _eq_error(arm)}
        rows += [{"metric": metric, "label": REPORT_METRICS[metric], **_own_statistics(arm[metric]), **arm_row}
                 for metric in metrics if metric in arm.columns]
    return rows


def _judge(table: pd.DataFrame, alpha: float) -> float:
    """Fill in the Holm-adjusted p-values, the power columns and the verdicts; returns the power's per-test level."""
    table[m.EXACT] = table[m.EXACT].astype(object)
    table["p_adjusted"] = st.holm(table["p_value"].to_numpy(float))
    tested = table["p_adjusted"].notna()
    level = alpha / int(tested.sum()) if tested.any() else math.nan
    welch = tested & (table["note"] != PERMUTED)  # the power is Welch's test's
    table.loc[welch, "detectable"] = [
        st.detectable_difference(row.exact_n, row.arm_n, _pooled_std(row), level) for row in table[welch].itertuples()]
    table.loc[welch, "seeds_needed"] = [
        st.seeds_needed(row.diff, _pooled_std(row), level) for row in table[welch].itertuples()]
    # no difference of accuracies exceeds SPAN: say how many seeds would detect one that large instead
    beyond = table["detectable"] > SPAN
    table.loc[beyond, "seeds_to_detect"] = [
        st.seeds_needed(SPAN, _pooled_std(row), level) for row in table[beyond].itertuples()]
    table.loc[beyond, "detectable"] = math.nan
    significant = tested & (table["p_adjusted"] < alpha)
    wins = [arm_wins(method) for method in table["method"]]
    table["verdict"] = np.where(table["exact_arm"] == "", REFERENCE, np.where(
        table["note"] == UNDEFINED, NOT_APPLICABLE, np.where(~significant, INCONCLUSIVE, np.where(
            table["diff"] > 0, wins, EXACT_WINS))))
    return level


def arm_wins(method: str) -> str:
    """The verdict word of an arm that beats its reference: ``<method> wins`` (``approx wins`` for an approximate
    size, ``rpp wins`` for a relaxed net, ``average wins`` for an averaged one, ...)."""
    return f"{method} wins"


# ---------------------------------------------------------------------------------------------------------------
# internals


def _comparable(results: pd.DataFrame, exclude_groups: Iterable[str]) -> pd.DataFrame:
    """Finished trials of the compared groups with a known ``exact`` flag, and the family arms of any group (whose
    flag may be unknown: measured only), each under the group it is judged on (its own in ``BACKBONE_GROUP``)."""
    if m.EXACT not in results.columns:
        raise ValueError(f"results: no {m.EXACT!r} column; pass a sweep's results table")
    frame = arms.with_arm_defaults(arms.finished(results))
    family = arms.is_family(frame)
    excluded = set(exclude_groups)
    if excluded and "group" in frame.columns:
        keep = ~frame["group"].isin(excluded) | family
        frame, family = frame[keep], family[keep]
    frame = frame[frame[m.EXACT].notna() | family].copy()
    frame[m.EXACT] = frame[m.EXACT].map(arms.exactness).astype(object)
    if "group" in frame.columns:
        frame[BACKBONE_GROUP] = frame["group"]
        frame["group"] = arms.judged_group(frame)
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
        dropped = results["group"].isin(excluded) & ~arms.is_family(arms.with_arm_defaults(results))
        if dropped.any():
            names = sorted(results.loc[dropped, "group"].unique())
            what = (f"plain CNN ({', '.join(names)}) trials ({int(dropped.sum())}) are never tested: a plain CNN is "
                    "not rotation-equivariant at any size, so exact and approximate mean nothing for it"
                    if all(map(arms.is_trivial, names)) else
                    f"{', '.join(names)} trials ({int(dropped.sum())}) are never tested (excluded groups)")
            notes.append(f"The {what}; they appear as reference rows where their settings match a condition.")
        results = results[~dropped]
    results = results[~arms.is_family(arms.with_arm_defaults(results))]  # a family arm may be measured only
    if m.EXACT in results.columns and results[m.EXACT].isna().any():
        notes.append(f"Left out {count_of(int(results[m.EXACT].isna().sum()), 'finished trial')} without a static "
                     "exact flag.")
    return notes


def _varying(frame: pd.DataFrame, ignore: Iterable[str]) -> list[str]:
    skip = NOT_CONDITIONS | set(ignore)
    return [column for column in arms.setting_columns(frame) if column not in skip and not arms.is_option(column)
            and frame[column].map(plain_value).nunique(dropna=False) > 1]


def _searched(frame: pd.DataFrame, columns: list[str]) -> list[str]:
    """The columns that vary inside one grid cell: sampled by a search, not set by the grid."""
    if "cell" not in frame.columns or frame["cell"].isna().all():
        return []
    cells = frame[frame["cell"].notna()]
    return [column for column in columns
            if (cells[column].map(plain_value).groupby(cells["cell"]).nunique(dropna=False) > 1).any()]


def _keys(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """Each row's normalised values of ``columns``, as a tuple."""
    return pd.Series([tuple(plain_value(v) for v in values) for values in zip(*(frame[c] for c in columns))]
                     if columns else [()] * len(frame), index=frame.index, dtype=object)


def by_condition(frame: pd.DataFrame, conditions: list[str]) -> list[tuple[tuple[Any, ...], pd.DataFrame]]:
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
    sizes = frame["input_size"].map(plain_value)
    return [(size, frame[sizes == size]) for size in sorted(sizes.dropna().unique())]


def _eq_error(trials: pd.DataFrame) -> float:
    """The mean measured output equivariance error of ``trials``; NaN where the table has none."""
    return float(trials[m.EQ_ERROR].mean()) if m.EQ_ERROR in trials.columns else math.nan


def _group_name(frame: pd.DataFrame) -> str:
    return "/".join(sorted(frame["group"].astype(str).unique())) if "group" in frame.columns else "?"


def _own_statistics(values: pd.Series) -> dict[str, Any]:
    """A reference row's statistics: the arm's own, nothing compared."""
    values = values.to_numpy(float)
    values = values[~np.isnan(values)]
    row = dict.fromkeys(_STAT_COLUMNS, math.nan)
    row.update(arm_mean=st.mean(values), arm_std=st.sample_std(values), arm_n=len(values), exact_n=0, verdict=REFERENCE,
               note="")
    return row


def _sort_key(column: str, value: Any) -> tuple[int, Any]:
    if value is None:
        return (2, 0)
    if column == REGIME:
        return (1, arms.regime_order(value))
    if isinstance(value, bool | int | float):
        return (0, value)
    return (1, str(value))


def _condition_label(conditions: list[str], key: tuple[Any, ...]) -> str:
    return ", ".join(f"{c}={format_value(v)}" for c, v in zip(conditions, key)) or ALL_TRIALS


def format_value(value: Any) -> str:
    value = plain_value(value)
    if value is None:
        return "unset"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _pooled_std(row: Any) -> float:
    return st.pooled_std(row.exact_n, row.exact_std, row.arm_n, row.arm_std)


def count_of(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
