"""What an arm of a study is, for the verdict and the figures alike: the columns that make it, its label, colour and
line style, which exact arm it is measured against, and which trials count.

- **Finished trials only**: ``finished`` keeps the trials whose ``status`` is ``finished``; ``finished_trials`` also
  keeps one trial per grid cell (a cell searched by Optuna is represented by its trial with the best ``val_acc``).
- **The columns.** An arm is a network at one input size with its static verdict and its families: ``group``,
  ``input_size``, ``exact``, ``relaxation``, ``subsampling``, ``invariance`` (the wrapper), ``eq_penalty`` and
  ``eq_penalty_kind`` (``ARM_COLUMNS``; a table without one of the last five, or a missing value, means its default
  in ``ARM_DEFAULTS``; a penalty's kind means nothing at λ = 0), and each method option that takes several values
  for one method (``relaxation_<option>``, ``invariance_<option>``: ``option_columns``). The verdict compares arms
  inside a condition, where every other setting is fixed; the figures draw all conditions at once, so for them every
  other setting that varies across cells and not inside one (``arm_columns``: not ``seed``, not a searched
  hyperparameter, not the data a trial learns from) is part of the arm too.
- **The label** is the one W&B and ``sweep --status`` use (``equisweep.pipeline.vocabulary.arm_label``): ``p4 28
  exact``, ``p4 29 approx``, ``p4 29 adaptive exact``, ``p4 28 rpp``, ``plain CNN 28``, ``p4 29 approx average``,
  ``plain CNN 28 eq_penalty=0.1``, then ``key=value`` for any further arm setting. A trivial group (``z2``, ``c1``)
  is neither exact nor approximate: its ``exact`` is None, unless a wrapper makes it exact. The word exact/approx is
  the backbone's (``BACKBONE_EXACT``): a wrapper's verdict says nothing of the net behind it.
- **Families.** An arm behind an invariance wrapper or trained with an equivariance penalty (``is_family``) is
  compared even on a plain CNN, under the group its wrapper or penalty acts with (``judged_group``: the wrapper's
  ``group`` option, else the backbone's, p4 for a trivial one).
- **Colour and line style**: one colour per arm of a sweep (``colours``), kept in every figure; exact arms solid,
  approximate dashed, relaxed and family arms dash-dotted, plain-CNN arms dotted (``linestyle``).
- **The reference rule**: the exact, unrelaxed, unwrapped and unpenalised arms of a condition are its references
  (``is_reference``); every other arm is measured against the reference of its own input size where there is one,
  else the nearest in size (the smaller on a tie); among those, the one with the arm's subsampling, else ``stride``
  (``reference_of``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from equisweep.names import CYCLIC_OR_DIHEDRAL, gaussian_params
from equisweep.pipeline import vocabulary as m
from equisweep.pipeline.sweep import columns
from equisweep.pipeline.sweep.results import exact_flag as exactness

REGIME = "train_symmetry"
DATA_COLUMNS = ("dataset", REGIME)  # what a trial learns from: a panel of the figures, never part of an arm
ARM_DEFAULTS: Mapping[str, Any] = MappingProxyType({
    "relaxation": m.NO_RELAXATION, "subsampling": m.STRIDE, "invariance": m.NO_INVARIANCE, "eq_penalty": m.NO_PENALTY,
    "eq_penalty_kind": m.ORBIT})
BACKBONE_EXACT = "backbone_exact"  # derived (``with_arm_defaults``): the verdict an arm's label names
ARM_COLUMNS = ("group", "input_size", m.EXACT, BACKBONE_EXACT, *ARM_DEFAULTS)
PLAIN_GROUP = "p4"  # the group a plain CNN's wrapper or penalty acts with (``equisweep.groups.reference_group``)
APPROX = "approx"  # the method of an arm that differs from its reference only by its size or sampling
EXCLUDED_GROUPS = tuple(sorted(m.TRIVIAL_GROUPS))
# the settings that say what a run is: all declared but its name and where its data lives
RUN_SETTINGS = frozenset(columns.SETTINGS) - frozenset(columns.NAMING_SETTINGS)
SAME_SIZE, NEAREST_SIZE = "same size", "nearest exact size"  # which rule picked an arm's reference
OPTION_PREFIXES = tuple(f"{setting}_" for setting in columns.METHOD_SETTINGS)
BACKBONE_GROUP = "backbone_group"  # the verdict's own column: a family arm's group, where ``group`` is the judged one
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f",
           "#bcbd22")


# ---------------------------------------------------------------------------------------------------------------
# which trials count


def finished(results: pd.DataFrame) -> pd.DataFrame:
    return results[results["status"] == "finished"] if "status" in results.columns else results


def is_trivial(group: Any) -> bool:
    return m.is_trivial(str(group).strip().lower())


def without_trivial_exactness(results: pd.DataFrame) -> pd.DataFrame:
    """``results`` with ``exact`` None (not applicable) for trivial groups without a wrapper, whatever an older table
    says (a wrapper such as group averaging makes even a plain CNN exact)."""
    if m.EXACT not in results.columns or "group" not in results.columns:
        return results
    exact = results[m.EXACT].astype(object)
    methods = results["invariance"] if "invariance" in results else [None] * len(results)
    kept = [not is_trivial(group) or (not missing(method) and method != m.NO_INVARIANCE)
            for group, method in zip(results["group"], methods)]
    return results.assign(**{m.EXACT: exact.where(np.array(kept, dtype=bool), None)})


def with_arm_defaults(results: pd.DataFrame) -> pd.DataFrame:
    """``results`` with every column of ``ARM_DEFAULTS``, missing values (an older table, a run that predates them)
    read as the defaults, the penalty's kind as the default where there is no penalty, and ``BACKBONE_EXACT``."""
    table = results.assign(**{column: results[column].astype(object).where(results[column].notna(), default)
                              if column in results.columns else default for column, default in ARM_DEFAULTS.items()})
    penalty = table["eq_penalty"].astype(float)
    return table.assign(eq_penalty=penalty, eq_penalty_kind=table["eq_penalty_kind"].where(penalty > 0, m.ORBIT),
                        **{BACKBONE_EXACT: pd.Series(m.backbone_verdicts(table.to_dict("records")), index=table.index,
                                                     dtype=object)})


def is_family(table: pd.DataFrame) -> pd.Series:
    """Which rows (of a table ``with_arm_defaults``) are behind an invariance wrapper or trained with a penalty."""
    return (table["invariance"] != m.NO_INVARIANCE) | (table["eq_penalty"] > 0)


def judged_group(table: pd.DataFrame) -> pd.Series:
    """The group each row (of a table ``with_arm_defaults``) is judged under: a family arm's wrapper ``group``
    option where it sets one, else its backbone's group, ``PLAIN_GROUP`` for a trivial one."""
    option = table["invariance_group"] if "invariance_group" in table else pd.Series(None, index=table.index)
    own = table["group"].where(~table["group"].map(is_trivial) | ~is_family(table), PLAIN_GROUP)
    return option.astype(object).where(option.notna() & is_family(table), own)


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


def finished_arms(results: pd.DataFrame) -> pd.DataFrame:
    """``finished_trials`` with the arm columns ``with_arm_defaults`` adds: what the figures draw arms from."""
    return with_arm_defaults(finished_trials(results))


# ---------------------------------------------------------------------------------------------------------------
# the columns that make an arm


def is_option(column: str) -> bool:
    """Whether ``column`` is a method's option, ``<setting>_<option>`` (``relaxation_free_wd``)."""
    return column.startswith(OPTION_PREFIXES)


def setting_columns(results: pd.DataFrame) -> list[str]:
    """The run-setting columns of a results table, in its order: those of ``RUN_SETTINGS`` it has and the methods'
    options (a column not declared as a setting, such as a new bookkeeping one, is never taken for one)."""
    return [c for c in results.columns if c in RUN_SETTINGS or is_option(c)]


def option_columns(results: pd.DataFrame) -> list[str]:
    """The method options that tell arms apart in ``results`` (``vocabulary.method_options``)."""
    return m.method_options(results[[c for c in results.columns if c in columns.METHOD_SETTINGS or is_option(c)]]
                            .to_dict("records"), columns.METHOD_SETTINGS)


def arm_columns(results: pd.DataFrame) -> list[str]:
    """What defines an arm across conditions: group, input size, exact (and the backbone's verdict), then every other
    setting that varies across cells and is constant inside each cell (so a searched hyperparameter is not one),
    except seed and the data (dataset, regime), and of the methods' options those that tell arms apart."""
    base = [c for c in ("group", "input_size", m.EXACT, BACKBONE_EXACT) if c in results]
    options = option_columns(results)
    extra = []
    for column in setting_columns(results):
        if column in ("group", "input_size", "seed", *DATA_COLUMNS) or results[column].nunique(dropna=False) < 2:
            continue
        if is_option(column) and column not in options:
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
    """``p4 28 exact``, ``p4 29 approx``, ``p4 28 rpp``, ``plain CNN 28``, ``p4 29 approx average`` for an arm given
    as ``{column: value}`` (the word exact/approx from ``BACKBONE_EXACT`` where the arm has it, else ``exact``);
    methods' options follow as ``option=value``, other settings beyond ``ARM_COLUMNS`` as ``key=value``."""
    named = {c: default if missing(arm.get(c)) else arm[c] for c, default in ARM_DEFAULTS.items()}
    word = arm[BACKBONE_EXACT] if BACKBONE_EXACT in arm else arm.get(m.EXACT)
    head = m.arm_label(str(arm.get("group", "")), arm.get("input_size", ""), exactness(word),
                       str(named["relaxation"]), str(named["subsampling"]), str(named["invariance"]),
                       float(named["eq_penalty"]), str(named["eq_penalty_kind"]),
                       options={c: v for c, v in arm.items() if is_option(c)})
    parts = [head.strip()] + [f"{c}={format_value(v)}" for c, v in arm.items()
                              if c not in ARM_COLUMNS and not is_option(c)]
    return " ".join(part for part in parts if part) or "all trials"


def format_value(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float | np.floating) else str(value)


def colours(results: pd.DataFrame) -> dict[str, str]:
    """One colour per arm of the finished trials, keyed by its label: the same arm has the same colour in every
    figure of a sweep, whichever subset a figure draws."""
    table = finished_arms(results)
    columns = arm_columns(table)
    return {label(dict(zip(columns, key))): PALETTE[i % len(PALETTE)] for i, key in enumerate(arms(table, columns))}


def linestyle(arm: Mapping[str, Any]) -> str:
    """Plain CNN dotted, relaxed and family arms dash-dotted, approximate dashed, exact solid."""
    changed = [not missing(arm.get(c)) and arm[c] != default for c, default in ARM_DEFAULTS.items()
               if c in ("relaxation", "invariance", "eq_penalty")]
    if any(changed):
        return "-."
    if is_trivial(arm.get("group")):
        return ":"
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


class Arm(NamedTuple):
    """One arm inside a condition: its input size, static verdict, methods, the backbone's group and verdict (what
    its label names), and the option columns that tell it apart, as ``(column, value)`` pairs."""

    input_size: Any
    exact: bool | None
    relaxation: str
    subsampling: str
    invariance: str
    eq_penalty: float
    eq_penalty_kind: str
    group: str
    backbone_exact: bool | None
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def settings(self) -> dict[str, Any]:
        """The arm as ``{column: value}``, as ``label`` reads it."""
        named = {c: getattr(self, c) for c in ("group", "input_size", m.EXACT, *ARM_DEFAULTS)}
        return {**named, BACKBONE_EXACT: self.backbone_exact, **dict(self.options)}

    @property
    def method(self) -> str:
        """What the arm does besides its size and sampling: ``approx``, or its relaxation, wrapper and penalty
        (``rpp``, ``average``, ``eq_penalty``), joined by ``+``."""
        used = [self.relaxation if self.relaxation != m.NO_RELAXATION else "",
                self.invariance if self.invariance != m.NO_INVARIANCE else "", "eq_penalty" if self.eq_penalty else ""]
        return "+".join(word for word in used if word) or APPROX


def by_arm(frame: pd.DataFrame, options: Sequence[str] = ()) -> list[tuple[Arm, pd.DataFrame]]:
    """(arm, trials) per arm of one condition (a table ``with_arm_defaults``; ``options``: the option columns that
    tell arms apart): approximate sizes first, then relaxed nets by relaxation, then wrapped nets by wrapper, then
    penalised ones by λ, each by size, default subsampling first."""
    backbone = frame[BACKBONE_GROUP] if BACKBONE_GROUP in frame else frame["group"]
    keys = pd.Series([Arm(plain_value(size), exactness(exact), str(relaxation), str(subsampling), str(invariance),
                          float(penalty), str(kind), str(group), exactness(word),
                          tuple((c, plain_value(v)) for c, v in zip(options, values) if not missing(v)))
                      for size, exact, relaxation, subsampling, invariance, penalty, kind, group, word, *values in zip(
                          frame["input_size"], frame[m.EXACT], frame["relaxation"], frame["subsampling"],
                          frame["invariance"], frame["eq_penalty"], frame["eq_penalty_kind"], backbone,
                          frame[BACKBONE_EXACT], *(frame[c] for c in options))],
                     index=frame.index, dtype=object)
    order = sorted(set(keys), key=_display_order)
    return [(key, frame[[k == key for k in keys]]) for key in order]


def _display_order(arm: Arm) -> tuple:
    return (arm.method != APPROX, arm.relaxation == m.NO_RELAXATION, arm.relaxation,
            arm.invariance == m.NO_INVARIANCE, arm.invariance, arm.eq_penalty, arm.eq_penalty_kind != m.ORBIT,
            arm.eq_penalty_kind, group_order(arm.group), sortable(arm.input_size), arm.subsampling != m.STRIDE,
            arm.subsampling, tuple((c, sortable(v)) for c, v in arm.options))


def is_reference(arm: Arm) -> bool:
    """Exact, and neither relaxed, wrapped nor penalised: what the other arms of a condition are measured against."""
    return bool(arm.exact) and arm.method == APPROX and not is_trivial(arm.group)


def reference_of(arm: Arm, references: list[tuple[Arm, pd.DataFrame]]) -> tuple[Arm, pd.DataFrame, str]:
    """The reference of ``arm``, its trials and the rule that picked it (``SAME_SIZE`` or ``NEAREST_SIZE``)."""
    sizes = sorted({ref.input_size for ref, _ in references})
    size = min(sizes, key=lambda other: (abs(other - arm.input_size), other)) if sizes else None
    ref, trials = min(((ref, trials) for ref, trials in references if ref.input_size == size),
                      key=lambda item: (item[0].subsampling != arm.subsampling, item[0].subsampling != m.STRIDE,
                                        item[0].subsampling))
    return ref, trials, SAME_SIZE if size == arm.input_size else NEAREST_SIZE
