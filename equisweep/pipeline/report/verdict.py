"""Exact versus approximate, condition by condition: does the network that is only approximately equivariant at its
input size beat the exactly equivariant one, and by how much beyond seed noise?

The input is a sweep's ``results.parquet`` (one row per trial, see ``equisweep.pipeline.sweep.results``). The rules:

- **Only finished trials count**; failed, running, pending and stopped trials are left out (and counted in a note).
- **Arms.** Within one condition the *exact* arm holds the trials whose static ``exact`` flag is true, the
  *approximate* arm those where it is false. Several approximate input sizes (e.g. 27 and 29 around an exact 28)
  pool into one approximate arm, as do several exact ones; the sizes are listed in ``exact_sizes``/``approx_sizes``
  and the gap by input size is a figure of the report.
- **Excluded groups.** The trivial group ``z2`` (and any group the caller adds to ``exclude_groups``) never enters a
  comparison: a Z2 CNN is not rotation-equivariant at any size, and its ``exact`` flag is computed as if it were P4,
  so "exact" and "approximate" mean nothing for it. Its trials are dropped before anything else, so ``group`` is a
  condition column only when several equivariant groups remain.
- **Conditions.** ``condition_columns`` picks the setting columns that vary across the remaining finished trials
  (``train_symmetry``, ``group``, ``model``, ``lr``, any grid axis, ...). Never a condition: ``input_size`` (it
  defines the arms), ``seed`` (the replicates), ``exact``, identity and bookkeeping columns (``trial_id``,
  ``trial_name``, ``cell``, ``status``, ``error``, ``attempts``, ``run_name``, ``data_dir``, ``trial_seconds``),
  metrics (``val_acc``, ``test_acc_*``, ``eq_error``, ``eq_error/<layer>``, ...), columns the caller names in
  ``ignore``, and columns that vary *inside* one grid cell (hyperparameters an Optuna search sampled): those are
  pooled, and a note says that their spread then includes the search, not only seed noise. Cell ids are per sweep:
  to judge several sweeps' tables together, give each its own cell ids, or drop ``cell`` (which turns this rule off).
- **Test.** Per condition and report metric: Welch's t-test (``scipy.stats.ttest_ind(equal_var=False)``) of the
  approximate against the exact arm, and the confidence interval of ``diff = approx_mean - exact_mean`` from
  Welch's t with Welch–Satterthwaite degrees of freedom. The p-values of all tested rows of the table are adjusted
  together with Holm–Bonferroni; a row says ``approx wins``/``exact wins`` (by the sign of ``diff``) when its
  adjusted p is below ``alpha``, ``tie`` otherwise. The interval is not adjusted: with many rows a 95 % interval can
  exclude 0 while the row is still a tie.
- **No test** (verdict ``n/a``, p and interval NaN, means still reported, the reason in ``note``) when an arm has
  fewer than two seeds with the metric (its spread cannot be estimated), or when neither arm varies at all across
  seeds (the t statistic is 0/0 or ±inf: a "certain" difference would only reflect an evaluation that is
  deterministic in the seed, not evidence beyond seed noise).
- A condition with finished trials in one arm only is skipped and listed in ``Verdicts.skipped``.

Accuracies stay fractions in the table; ``to_markdown`` and ``summary_paragraph`` speak in accuracy points
(fraction x 100). This module imports no training code: pandas, numpy and scipy only.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from equisweep.pipeline.sweep.results import SCALAR_METRICS
from equisweep.pipeline.train import metrics as m

REPORT_METRICS: Mapping[str, str] = MappingProxyType({
    m.TEST_ACC_UPRIGHT: "upright",
    m.TEST_ACC_ORBIT: "orbit",
    m.TEST_ACC_MEAN_ANGLES: "mean over angles",
    m.TEST_ACC_MIN_ANGLES: "min over angles",
})
EXCLUDED_GROUPS = ("z2", "c1")  # trivial groups: the native and the e2cnn spelling
APPROX_WINS, EXACT_WINS, TIE, NOT_TESTED = "approx wins", "exact wins", "tie", "n/a"
ALL_TRIALS = "all trials"  # the condition label when no setting varies

_IDENTITY = frozenset({"trial_id", "trial_name", "cell", "status", "error", "attempts", "run_name", "data_dir",
                       "trial_seconds"})
_METRICS = frozenset({*SCALAR_METRICS, m.TRAIN_ACC, m.BEST_CHECKPOINT})
NOT_SETTINGS = _IDENTITY | _METRICS | {m.EXACT}  # with eq_error/<layer>: every column of a row that is no setting
NOT_CONDITIONS = NOT_SETTINGS | {"input_size", "seed"}
_STAT_COLUMNS = ["exact_mean", "exact_std", "exact_n", "approx_mean", "approx_std", "approx_n", "diff", "ci_low",
                 "ci_high", "p_value", "p_adjusted", "verdict", "note"]


@dataclass(frozen=True)
class Verdicts:
    """What ``verdict_table`` returns.

    ``table``: one row per condition x report metric, sorted by condition then metric, with the columns
    ``<condition columns>..., condition, metric, label, exact_sizes, approx_sizes, exact_mean, exact_std, exact_n,
    approx_mean, approx_std, approx_n, diff, ci_low, ci_high, p_value, p_adjusted, verdict, note``
    (accuracies as fractions; ``condition`` is a label such as ``"train_symmetry=none, lr=0.01"``, or ``"all
    trials"`` when nothing varies; ``metric`` is the column name and ``label`` its short name; ``note`` says why a
    row was not tested, else it is empty).
    ``conditions``: the condition columns, in table order. ``skipped``: one line per condition that had finished
    trials in one arm only. ``notes``: what was left out or pooled and why. ``alpha``, ``confidence``: as asked.
    """

    table: pd.DataFrame
    conditions: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    alpha: float = 0.05
    confidence: float = 0.95


def condition_columns(results: pd.DataFrame, *, exclude_groups: Iterable[str] = EXCLUDED_GROUPS,
                      ignore: Iterable[str] = ()) -> list[str]:
    """The setting columns that vary across the finished trials of the compared groups, in table order; see the
    module docstring for what never counts (``input_size``, ``seed``, ``exact``, identity, metrics, searched)."""
    frame = _comparable(results, exclude_groups)
    return [column for column in _varying(frame, ignore) if column not in _searched(frame, [column])]


def verdict_table(results: pd.DataFrame, alpha: float = 0.05, *, exclude_groups: Iterable[str] = EXCLUDED_GROUPS,
                  ignore: Iterable[str] = (), confidence: float = 0.95) -> Verdicts:
    """Exact vs approximate per condition and report metric: means, spreads, Welch's test, Holm-adjusted verdicts.

    ``results``: a sweep's results table. ``alpha``: the level for the Holm-adjusted p-values. ``exclude_groups``:
    groups kept out of every comparison (z2 by default). ``ignore``: setting columns to pool over instead of
    comparing within. ``confidence``: the level of the interval of the difference.
    """
    if not 0 < alpha < 1 or not 0 < confidence < 1:
        raise ValueError(f"alpha and confidence must lie in (0, 1), got {alpha} and {confidence}")
    notes = _left_out(results, exclude_groups)
    frame = _comparable(results, exclude_groups)
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
        exact, approx = group[group[m.EXACT]], group[~group[m.EXACT]]
        if exact.empty or approx.empty:
            skipped.append(f"{label}: only {'approximate' if exact.empty else 'exact'} trials finished "
                           f"({len(group)}); nothing to compare.")
            continue
        sizes = {"exact_sizes": _sizes(exact), "approx_sizes": _sizes(approx)}
        for metric in metrics:
            rows.append({**dict(zip(conditions, key)), "condition": label, "metric": metric,
                         "label": REPORT_METRICS[metric], **sizes,
                         **compare(exact[metric].to_numpy(float), approx[metric].to_numpy(float), confidence)})
    table = pd.DataFrame(rows, columns=[*conditions, "condition", "metric", "label", "exact_sizes", "approx_sizes",
                                        *_STAT_COLUMNS])
    table["p_adjusted"] = holm(table["p_value"].to_numpy(float))
    tested = table["p_adjusted"].notna()
    significant = tested & (table["p_adjusted"] < alpha)
    table["verdict"] = np.where(~tested, NOT_TESTED, np.where(~significant, TIE, np.where(
        table["diff"] > 0, APPROX_WINS, EXACT_WINS)))
    return Verdicts(table, conditions, skipped, notes, alpha, confidence)


def compare(exact: np.ndarray, approx: np.ndarray, confidence: float = 0.95) -> dict[str, Any]:
    """One row's statistics: arm means, sample stds (ddof 1) and counts (NaNs dropped), ``diff`` = approx - exact,
    Welch's interval and p-value; NaN p and interval with the reason in ``note`` when there is no test."""
    exact, approx = exact[~np.isnan(exact)], approx[~np.isnan(approx)]
    n1, n2 = len(exact), len(approx)
    mean1, mean2 = _mean(exact), _mean(approx)
    sd1, sd2 = _std(exact), _std(approx)
    row = {"exact_mean": mean1, "exact_std": sd1, "exact_n": n1, "approx_mean": mean2, "approx_std": sd2,
           "approx_n": n2, "diff": mean2 - mean1, "ci_low": math.nan, "ci_high": math.nan, "p_value": math.nan,
           "p_adjusted": math.nan, "verdict": NOT_TESTED, "note": ""}
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


def display_table(verdicts: Verdicts) -> pd.DataFrame:
    """The verdict table as the report shows it (strings): condition columns, metric, exact and approximate
    mean ± std (n), diff [CI] and p (adjusted) in accuracy points, verdict."""
    level = f"{verdicts.confidence * 100:g}%"
    header = [*verdicts.conditions, "metric", "exact mean ± std (n)", "approx mean ± std (n)",
              f"diff [{level} CI] (points)", "p (adj.)", "verdict"]
    rows = []
    for row in verdicts.table.itertuples(index=False):
        cells = [_format_value(value) for value in row[:len(verdicts.conditions)]]
        diff = f"{_points(row.diff, signed=True)}"
        if not math.isnan(row.ci_low):
            diff += f" [{_points(row.ci_low, signed=True)}, {_points(row.ci_high, signed=True)}]"
        rows.append([*cells, row.label, _arm(row.exact_mean, row.exact_std, row.exact_n),
                     _arm(row.approx_mean, row.approx_std, row.approx_n), diff, _p(row.p_adjusted), row.verdict])
    return pd.DataFrame(rows, columns=header)


def markdown_table(frame: pd.DataFrame, right: Iterable[str] = ()) -> str:
    """A pipe table of ``frame`` (hand-formatted, no ``tabulate``); columns in ``right`` align right."""
    right = set(right)
    lines = [_md_row(list(frame.columns)), _md_row(["---:" if c in right else "---" for c in frame.columns])]
    lines += [_md_row([_format_value(v) for v in row]) for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def to_markdown(verdicts: Verdicts) -> str:
    """The verdict table as Markdown (numbers right-aligned)."""
    table = display_table(verdicts)
    return markdown_table(table, right=table.columns[len(verdicts.conditions) + 1:-1])


def summary_paragraph(verdicts: Verdicts) -> str:
    """Plain English from the table: per condition, which metrics favour the approximate or the exact network and
    by how many accuracy points (with the interval), which are ties, and which could not be tested and why."""
    table = verdicts.table
    level = f"{verdicts.confidence * 100:g} %"
    sentences = []
    if table.empty:
        sentences.append("No condition has finished trials of both the exact and the approximate network, so "
                         "there is nothing to compare.")
    else:
        counts = table["verdict"].value_counts()
        tested = int(table["p_value"].notna().sum())
        if tested:
            lead = (f"Approximate minus exact accuracy, per condition and metric ({tested} Welch t-tests over seeds, "
                    f"Holm-adjusted at alpha = {verdicts.alpha:g}): {counts.get(APPROX_WINS, 0)} {APPROX_WINS}, "
                    f"{counts.get(EXACT_WINS, 0)} {EXACT_WINS}, {_count(counts.get(TIE, 0), TIE)}")
            if counts.get(NOT_TESTED, 0):
                lead += f", {counts[NOT_TESTED]} not tested"
        else:
            lead = (f"Approximate minus exact accuracy, per condition and metric: none of the {len(table)} "
                    "comparisons could be tested")
        sentences.append(lead + ".")
        for label, group in table.groupby("condition", sort=False):
            sentences.append(_condition_sentence(label, group, level))
    sentences += verdicts.skipped
    sentences += verdicts.notes
    return " ".join(sentences)


# ---------------------------------------------------------------------------------------------------------------
# internals


def _comparable(results: pd.DataFrame, exclude_groups: Iterable[str]) -> pd.DataFrame:
    """Finished trials of the compared groups with a known ``exact`` flag (as a plain bool column)."""
    frame = results
    if "status" in frame.columns:
        frame = frame[frame["status"] == "finished"]
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
            names = ", ".join(sorted(results.loc[dropped, "group"].unique()))
            notes.append(f"{names} trials ({int(dropped.sum())}) are not compared: a z2 CNN is never rotation-"
                         "equivariant, so exact and approximate mean nothing for it." if names == "z2" else
                         f"{names} trials ({int(dropped.sum())}) are not compared (excluded groups).")
        results = results[~dropped]
    if m.EXACT in results.columns and results[m.EXACT].isna().any():
        notes.append(f"Left out {_count(int(results[m.EXACT].isna().sum()), 'finished trial')} without a static "
                     "exact flag.")
    return notes


def _varying(frame: pd.DataFrame, ignore: Iterable[str]) -> list[str]:
    skip = NOT_CONDITIONS | set(ignore)
    return [column for column in frame.columns
            if column not in skip and not column.startswith(f"{m.EQ_ERROR}/")
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


def _by_condition(frame: pd.DataFrame, conditions: list[str]) -> list[tuple[tuple[Any, ...], pd.DataFrame]]:
    """(condition values, trials) per condition present, sorted by the values (missing last)."""
    keys = pd.Series([tuple(_norm(v) for v in values) for values in zip(*(frame[c] for c in conditions))]
                     if conditions else [()] * len(frame), index=frame.index, dtype=object)
    groups: dict[tuple[Any, ...], list[Any]] = {}
    for index, key in keys.items():
        groups.setdefault(key, []).append(index)
    ordered = sorted(groups, key=lambda key: tuple(_sort_key(value) for value in key))
    return [(key, frame.loc[groups[key]]) for key in ordered]


def _sort_key(value: Any) -> tuple[int, Any]:
    if value is None:
        return (2, 0)
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


def _sizes(frame: pd.DataFrame) -> str:
    if "input_size" not in frame.columns:
        return ""
    return ", ".join(_format_value(size) for size in sorted(frame["input_size"].dropna().unique()))


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if len(values) else math.nan


def _std(values: np.ndarray) -> float:
    """The sample std (ddof 1); exactly 0 for identical values (not a rounding residue), NaN for fewer than 2."""
    if len(values) < 2:
        return math.nan
    return 0.0 if np.ptp(values) == 0 else float(np.std(values, ddof=1))


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


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"


def _condition_sentence(label: str, group: pd.DataFrame, level: str) -> str:
    first = group.iloc[0]
    arms = (f"exact at {first.exact_sizes or '?'} ({_count(int(group['exact_n'].max()), 'seed')}) vs approximate "
            f"at {first.approx_sizes or '?'} ({_count(int(group['approx_n'].max()), 'seed')})")
    parts = []
    for verdict, who in ((APPROX_WINS, "the approximate network"), (EXACT_WINS, "the exact network")):
        rows = group[group["verdict"] == verdict]
        if len(rows):
            sign = 1 if verdict == APPROX_WINS else -1
            parts.append(f"{who} is better on " + _join(
                f"{row.label} by {sign * row.diff * 100:.1f} points ({level} CI {sign * _lo(row, sign) * 100:.1f} "
                f"to {sign * _hi(row, sign) * 100:.1f})" for row in rows.itertuples()))
    ties = group[group["verdict"] == TIE]
    if len(ties):
        parts.append("there is no difference beyond seed noise on " + _join(
            f"{row.label} ({row.diff * 100:+.1f} points, CI {row.ci_low * 100:+.1f} to {row.ci_high * 100:+.1f})"
            for row in ties.itertuples()))
    untested = group[group["verdict"] == NOT_TESTED]
    for note, rows in untested.groupby("note", sort=False):
        parts.append(f"{note}: approximate minus exact is " + _join(
            f"{row.diff * 100:+.1f} points on {row.label}" for row in rows.itertuples()))
    where = "Over all trials" if label == ALL_TRIALS else f"Under {label}"
    return f"{where}, {arms}: {'; '.join(parts)}."


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _lo(row: Any, sign: int) -> float:
    return row.ci_low if sign > 0 else row.ci_high


def _hi(row: Any, sign: int) -> float:
    return row.ci_high if sign > 0 else row.ci_low


def _join(items: Iterable[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
