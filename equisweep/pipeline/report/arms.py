"""What an arm of a study is, for the verdict and the figures alike: the columns that make it, its label, colour and
line style, which exact arm it is measured against, and which trials count.

- **Finished trials only**: ``finished`` keeps the trials whose ``status`` is ``finished``; ``finished_trials`` also
  keeps one trial per grid cell (a cell searched by Optuna is represented by its trial with the best ``val_acc``).
- **The columns.** An arm is a network at one input size with its static verdict: ``group``, ``input_size``,
  ``exact``, ``relaxation`` and ``subsampling`` (``ARM_COLUMNS``; a table without the last two, or a missing value,
  means ``none`` and ``stride``). The verdict compares arms inside a condition, where every other setting is fixed;
  the figures draw all conditions at once, so for them every other setting that varies across cells and not inside
  one (``arm_columns``: not ``seed``, not a searched hyperparameter, not the data a trial learns from) is part of
  the arm too.
- **The label** is the one W&B and ``sweep --status`` use (``equisweep.pipeline.vocabulary.arm_label``): ``p4 28
  exact``, ``p4 29 approx``, ``p4 29 adaptive exact``, ``p4 28 rpp``, ``plain CNN 28``, then ``key=value`` for any
  further arm setting. A trivial group (``z2``, ``c1``) is neither exact nor approximate: its ``exact`` is None.
- **Colour and line style**: one colour per arm of a sweep (``colours``), kept in every figure; exact arms solid,
  approximate dashed, relaxed dash-dotted, plain-CNN arms dotted (``linestyle``).
- **The reference rule**: the exact, unrelaxed arms of a condition are its references (``is_reference``); every
  other arm is measured against the reference of its own input size where there is one, else the nearest in size
  (the smaller on a tie); among those, the one with the arm's subsampling, else ``stride`` (``reference_of``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

from equisweep.names import CYCLIC_OR_DIHEDRAL, gaussian_params
from equisweep.pipeline import vocabulary as m
from equisweep.pipeline.sweep import columns
from equisweep.pipeline.sweep.results import exact_flag as exactness

REGIME = "train_symmetry"
DATA_COLUMNS = ("dataset", REGIME)  # what a trial learns from: a panel of the figures, never part of an arm
ARM_DEFAULTS: Mapping[str, str] = MappingProxyType({"relaxation": m.NO_RELAXATION, "subsampling": m.STRIDE})
ARM_COLUMNS = ("group", "input_size", m.EXACT, *ARM_DEFAULTS)
EXCLUDED_GROUPS = tuple(sorted(m.TRIVIAL_GROUPS))
# the settings that say what a run is: all declared but its name and where its data lives
RUN_SETTINGS = frozenset(columns.SETTINGS) - frozenset(columns.NAMING_SETTINGS)
SAME_SIZE, NEAREST_SIZE = "same size", "nearest exact size"  # which rule picked an arm's reference
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f",
           "#bcbd22")
ArmKey = tuple[Any, bool, str, str]  # inside one condition: (input size, exact, relaxation, subsampling)


# ---------------------------------------------------------------------------------------------------------------
# which trials count


def finished(results: pd.DataFrame) -> pd.DataFrame:
    return results[results["status"] == "finished"] if "status" in results.columns else results


def is_trivial(group: Any) -> bool:
    return m.is_trivial(str(group).strip().lower())


def without_trivial_exactness(results: pd.DataFrame) -> pd.DataFrame:
    """``results`` with ``exact`` None (not applicable) for trivial groups, whatever an older table says."""
    if m.EXACT not in results.columns or "group" not in results.columns:
        return results
    exact = results[m.EXACT].astype(object)
    return results.assign(**{m.EXACT: exact.where(~results["group"].map(is_trivial), None)})


def with_arm_defaults(results: pd.DataFrame) -> pd.DataFrame:
    """``results`` with ``relaxation`` and ``subsampling`` columns, missing values (an older table, a run that
    predates them) read as the defaults ``none`` and ``stride``."""
    return results.assign(**{column: results[column].astype(object).where(results[column].notna(), default)
                             if column in results.columns else default for column, default in ARM_DEFAULTS.items()})


def finished_trials(results: pd.DataFrame) -> pd.DataFrame:
    """The finished trials, one per cell: a cell searched by Optuna keeps its trial with the best ``val_acc``;
    ``exact`` is None (not applicable) for a plain CNN, whatever an older table says."""
    table = without_trivial_exactness(finished(results))
    if "cell" not in table or table["cell"].isna().all() or not table["cell"].dropna().duplicated().any():
        return table.copy()
    has_cell = table["cell"].notna()
    ranked = table[has_cell].assign(_rank=table[has_cell][m.VAL_ACC].fillna(-np.inf) if m.VAL_ACC in table else 0.0)
    best = ranked.sort_values("_rank", ascending=False, kind="stable").drop_duplicates("cell").drop(columns="_rank")
    kept = set(best.index) | set(table.index[~has_cell])
    return table.loc[[index for index in table.index if index in kept]].copy()


# ---------------------------------------------------------------------------------------------------------------
# the columns that make an arm


def setting_columns(results: pd.DataFrame) -> list[str]:
    """The run-setting columns of a results table, in its order: those of ``RUN_SETTINGS`` it has (a column not
    declared as a setting, such as a new bookkeeping one, is never taken for one)."""
    return [c for c in results.columns if c in RUN_SETTINGS]


def arm_columns(results: pd.DataFrame) -> list[str]:
    """What defines an arm across conditions: group, input size, exact, then every other setting that varies across
    cells and is constant inside each cell (so a searched hyperparameter is not one), except seed and the data
    (dataset, regime)."""
    base = [c for c in ("group", "input_size", m.EXACT) if c in results]
    extra = []
    for column in setting_columns(results):
        if column in ("group", "input_size", "seed", *DATA_COLUMNS) or results[column].nunique(dropna=False) < 2:
            continue
        if "cell" in results and results["cell"].notna().any():
            per_cell = results[results["cell"].notna()].groupby("cell")[column].nunique(dropna=False)
            if (per_cell > 1).any():
                continue
        extra.append(column)
    return base + extra


# ---------------------------------------------------------------------------------------------------------------
# label, colour, line style


def plain_value(value: Any) -> Any:
    """A hashable, NaN-free form of one cell of a setting column (None for missing)."""
    if value is None or (isinstance(value, float | np.floating) and math.isnan(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def missing(value: Any) -> bool:
    return value is None or (np.ndim(value) == 0 and bool(pd.isna(value)))


def label(arm: Mapping[str, Any]) -> str:
    """``p4 28 exact``, ``p4 29 approx``, ``p4 28 rpp``, ``plain CNN 28`` for an arm given as ``{column: value}``;
    settings beyond ``ARM_COLUMNS`` follow as ``key=value``."""
    named = {c: default if missing(arm.get(c)) else str(arm[c]) for c, default in ARM_DEFAULTS.items()}
    head = m.arm_label(str(arm.get("group", "")), arm.get("input_size", ""), exactness(arm.get(m.EXACT)), **named)
    parts = [head.strip()] + [f"{c}={format_value(v)}" for c, v in arm.items() if c not in ARM_COLUMNS]
    return " ".join(part for part in parts if part) or "all trials"


def format_value(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float | np.floating) else str(value)


def colours(results: pd.DataFrame) -> dict[str, str]:
    """One colour per arm of the finished trials, keyed by its label: the same arm has the same colour in every
    figure of a sweep, whichever subset a figure draws."""
    table = finished_trials(results)
    columns = arm_columns(table)
    return {label(dict(zip(columns, key))): PALETTE[i % len(PALETTE)] for i, key in enumerate(arms(table, columns))}


def linestyle(arm: Mapping[str, Any]) -> str:
    """Plain CNN dotted, relaxed dash-dotted, approximate dashed, exact solid."""
    if is_trivial(arm.get("group")):
        return ":"
    relaxation = arm.get("relaxation")
    if not missing(relaxation) and relaxation != m.NO_RELAXATION:
        return "-."
    return "--" if exactness(arm.get(m.EXACT)) is False else "-"


# ---------------------------------------------------------------------------------------------------------------
# order


def regime_order(regime: str) -> tuple:
    """Sort key: none, flip, Gaussian (by std, then mean), c4, d4, uniform, then anything else by name."""
    params = gaussian_params(regime)
    if params is not None:
        return (2, params[1], params[0], "")
    rank = {"none": 0, "flip": 1, "c4": 3, "d4": 4, "uniform": 5}.get(str(regime), 6)
    return (rank, 0.0, 0.0, str(regime))


def group_order(group: Any) -> tuple:
    """Sort key: the trivial group, p4 (c4), p4m (d4), then c<N> and d<N> by N, then anything else by name."""
    name = str(group).lower()
    named = {"z2": 0, "c1": 0, "p4": 1, "c4": 1, "p4m": 2, "d4": 2}
    if name in named:
        return (named[name], 0, name)
    match = CYCLIC_OR_DIHEDRAL.match(name)
    return (3 + (match.group(1) == "d"), int(match.group(2)), name) if match else (5, 0, name)


def sortable(value: Any) -> tuple:
    if missing(value):
        return (2, 0, "")
    if isinstance(value, bool | np.bool_):
        return (0, -int(value), "")  # exact before approximate
    if isinstance(value, int | float | np.integer | np.floating):
        return (0, float(value), "")
    return (1, 0, str(value))


def arm_sort(columns: Sequence[str], key: tuple) -> tuple:
    return tuple(group_order(v) if c == "group" else regime_order(v) if c == REGIME else sortable(v)
                 for c, v in zip(columns, key))


def arms(table: pd.DataFrame, columns: Sequence[str]) -> list[tuple]:
    """The distinct values of ``columns`` in ``table`` (an arm, a panel), in display order."""
    keys = {tuple(k) if isinstance(k, tuple) else (k,)
            for k in table.groupby(list(columns), dropna=False).groups} if columns else {()}
    return sorted(keys, key=lambda k: arm_sort(columns, k))


# ---------------------------------------------------------------------------------------------------------------
# arms inside one condition, and the reference rule


def by_arm(frame: pd.DataFrame) -> list[tuple[ArmKey, pd.DataFrame]]:
    """(arm key, trials) per arm of one condition: approximate sizes first, then relaxed nets by relaxation, each by
    size, default subsampling first."""
    keys = pd.Series(list(zip(frame["input_size"].map(plain_value), frame[m.EXACT], frame["relaxation"].astype(str),
                              frame["subsampling"].astype(str))), index=frame.index, dtype=object)
    order = sorted(set(keys), key=lambda k: (k[2] != m.NO_RELAXATION, k[2], k[0], k[3] != m.STRIDE, k[3]))
    return [(key, frame[keys == key]) for key in order]


def is_reference(key: ArmKey) -> bool:
    """Exact and not relaxed: what the other arms of a condition are measured against."""
    _, exact, relaxation, _ = key
    return bool(exact) and relaxation == m.NO_RELAXATION


def reference_of(key: ArmKey, references: list[tuple[ArmKey, pd.DataFrame]]) -> tuple[ArmKey, pd.DataFrame, str]:
    """The reference of the arm ``key``, its trials and the rule that picked it (``SAME_SIZE`` or
    ``NEAREST_SIZE``)."""
    sizes = sorted({ref[0] for ref, _ in references})
    size = min(sizes, key=lambda other: (abs(other - key[0]), other)) if sizes else None
    ref, trials = min(((ref, trials) for ref, trials in references if ref[0] == size),
                      key=lambda item: (item[0][3] != key[3], item[0][3] != m.STRIDE, item[0][3]))
    return ref, trials, SAME_SIZE if size == key[0] else NEAREST_SIZE

