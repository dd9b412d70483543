"""Approximate minus exact accuracy against one swept axis (input size, the spread of Gaussian training angles, ...)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from equisweep.errors import UserError
from equisweep.names import gaussian_params
from equisweep.pipeline import vocabulary as m
from equisweep.pipeline.report import arms as a
from equisweep.pipeline.report.arms import REGIME
from equisweep.pipeline.report.figures.common import (
    ACCURACY_METRICS,
    MARKERS,
    METRIC_LABELS,
    legend_below,
    panels,
    require,
    row_label,
    select,
)


def gap_by(results: pd.DataFrame, axis: str = "gaussian_std", metrics: Sequence[str] | None = None,
           percent: bool = True) -> Figure:
    """Approximate minus exact accuracy against one swept axis, one panel per metric.

    ``axis`` is ``"gaussian_std"`` or ``"gaussian_mean"`` (read from Gaussian regimes; other regimes are left
    out), ``"input_size"`` (each approximate size against the exact arm of the same group and regime, pooled
    over its sizes) or any other results column (approximate against exact at each of its values). A stratum is a
    non-trivial group with the remaining arm settings and the regime (for Gaussian axes the other Gaussian
    parameter). Along ``input_size`` each stratum is a grey line whose points take their approximate arm's colour;
    along any other axis each approximate arm of a stratum is a line in its arm's colour (``arms.colours``); the
    marker tells the strata apart. Points are differences of means over seeds; error bars are ± one standard
    error of that difference where both sides have several seeds.
    """
    table = a.finished_arms(results)
    require(table, ["group", m.EXACT], "results")
    metrics = [c for c in (metrics or ACCURACY_METRICS) if c in table and table[c].notna().any()]
    if not metrics:
        raise UserError("gap_by: the results have none of the metrics asked for")
    arm = _Arms(a.colours(results), a.arm_columns(table))
    table, other = _along(_equivariant(table), axis)
    strata_cols = [c for c in a.arm_columns(table) if c not in (m.EXACT, a.BACKBONE_EXACT, "input_size", axis, REGIME)]
    strata_cols = [c for c in dict.fromkeys(strata_cols + ([other] if other else [])) if c in table]
    if table.empty:
        raise UserError(f"gap_by: no finished trials of a non-trivial group vary {axis!r}")
    scale = 100.0 if percent else 1.0
    fig = Figure(layout="constrained")
    axes = panels(fig, len(metrics), 3.8, 3.0, sharey=False)
    strata = a.arms(table, strata_cols)
    markers = {key: MARKERS[i % len(MARKERS)] for i, key in enumerate(strata)}
    handles: dict[str, Line2D] = {}
    for ax, metric in zip(axes, metrics):
        for key in strata:
            rows = select(table, strata_cols, key)
            others = {c: v for c, v in zip(strata_cols, key) if c not in arm.columns}  # the arm names the rest
            draw = _along_input_size if axis == "input_size" else _per_arm
            draw(ax, rows, axis, metric, scale, arm, markers[key], others, handles)
        _style(ax, table, axis, metric, scale, percent)
    if handles:
        legend_below(fig, list(handles.values()))
    return fig


class _Arms:
    """Each approximate arm's label and colour, read from its first trial."""

    def __init__(self, colours: dict[str, str], columns: list[str]):
        self.colours, self.columns = colours, columns

    def label(self, rows: pd.DataFrame) -> str:
        return a.label({c: rows.iloc[0][c] for c in self.columns})

    def colour(self, rows: pd.DataFrame) -> str:
        return self.colours.get(self.label(rows), "0.3")


def _equivariant(table: pd.DataFrame) -> pd.DataFrame:
    """The trials of a non-trivial group with a known ``exact`` flag, as plain bools."""
    table = table[[not a.is_trivial(g) and a.exactness(e) is not None for g, e in zip(table["group"], table[m.EXACT])]]
    return table.assign(**{m.EXACT: [bool(e) for e in table[m.EXACT]]})


def _along(table: pd.DataFrame, axis: str) -> tuple[pd.DataFrame, str | None]:
    """``table`` with the column ``axis`` (read from Gaussian regimes for ``gaussian_std``/``gaussian_mean``), and
    the column that, besides the arm, tells strata apart."""
    if axis in ("gaussian_std", "gaussian_mean"):
        require(table, [REGIME], "results")
        params = [gaussian_params(r) for r in table[REGIME]]
        table = table.assign(gaussian_mean=[p[0] if p else np.nan for p in params],
                             gaussian_std=[p[1] if p else np.nan for p in params]).dropna(subset=[axis])
        return table, "gaussian_mean" if axis == "gaussian_std" else "gaussian_std"
    require(table, [axis], "results")
    return table, REGIME if REGIME in table else None


def _along_input_size(ax, rows, axis, metric, scale, arm: _Arms, marker, others, handles) -> None:
    """One stratum as a grey line, each point in its approximate arm's colour."""
    stratum = row_label(list(others), tuple(others.values()))
    xs, ys, errs = _gaps(rows, axis, metric)
    if not xs:
        return
    approx = rows[~rows[m.EXACT]]
    ax.plot(xs, np.array(ys) * scale, color="0.6", linewidth=1.2, marker=None, label=stratum)
    for x, y, err in zip(xs, ys, errs):
        arm_rows = approx[approx["input_size"] == x]
        ax.errorbar([x], [y * scale], yerr=[err * scale], color=arm.colour(arm_rows), marker=marker, markersize=5,
                    capsize=3, linewidth=1.4, gid="gap-point")
        label = arm.label(arm_rows)
        handles[label] = Line2D([], [], color=arm.colour(arm_rows), marker="o", linestyle="", label=label)
    handles[stratum] = Line2D([], [], color="0.6", marker=marker, label=stratum)


def _per_arm(ax, rows, axis, metric, scale, arm: _Arms, marker, others, handles) -> None:
    """Each approximate arm of one stratum as a line in its colour."""
    stratum = row_label(list(others), tuple(others.values()))
    approx = rows[~rows[m.EXACT]]
    for size in sorted(approx["input_size"].unique()):
        arm_rows = approx[approx["input_size"] == size]
        xs, ys, errs = _gaps(pd.concat([rows[rows[m.EXACT]], arm_rows]), axis, metric)
        if not xs:
            continue
        label = arm.label(arm_rows) + (f", {stratum}" if others else "")
        ax.errorbar(xs, np.array(ys) * scale, yerr=np.array(errs) * scale, color=arm.colour(arm_rows),
                    marker=marker, markersize=4, capsize=3, linewidth=1.4, label=label)
        handles[label] = Line2D([], [], color=arm.colour(arm_rows), marker=marker, label=label)


def _style(ax, table: pd.DataFrame, axis: str, metric: str, scale: float, percent: bool) -> None:
    ax.axhline(0.0, color="0.3", linewidth=0.8, zorder=0)
    low, high = ax.get_ylim()
    ax.set_ylim(min(low, -scale / 100), max(high, scale / 100))  # at least ± one point: noise stays small
    ticks = sorted(table[axis].dropna().unique())
    if len(ticks) <= 12:
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.set_title(METRIC_LABELS.get(metric, metric), fontsize=10)
    ax.set_xlabel(axis.replace("_", " ") + (" (degrees)" if axis.startswith("gaussian") else ""), fontsize=9)
    ax.set_ylabel("approx − exact (points)" if percent else "approx − exact", fontsize=9)
    ax.grid(alpha=0.25, linewidth=0.6)


def _gaps(rows: pd.DataFrame, axis: str, metric: str) -> tuple[list[float], list[float], list[float]]:
    """Per value of ``axis``: approximate minus exact mean of ``metric`` and its standard error (0 with one seed)."""
    def summary(values: pd.Series) -> tuple[float, float, int]:
        values = values.dropna()
        return float(values.mean()), float(values.var(ddof=1)) if len(values) > 1 else np.nan, len(values)

    xs, ys, errs = [], [], []
    exact_all = rows[rows[m.EXACT]]
    for value in sorted(rows[axis].dropna().unique(), key=a.sortable):
        at = rows[rows[axis] == value]
        approx = at[~at[m.EXACT]][metric]
        exact = exact_all[metric] if axis == "input_size" else at[at[m.EXACT]][metric]
        if approx.notna().sum() == 0 or exact.notna().sum() == 0:
            continue
        (ma, va, na), (me, ve, ne) = summary(approx), summary(exact)
        xs.append(float(value))
        ys.append(ma - me)
        errs.append(math.sqrt(va / na + ve / ne) if na > 1 and ne > 1 else 0.0)
    return xs, ys, errs
