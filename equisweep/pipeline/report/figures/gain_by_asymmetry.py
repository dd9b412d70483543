"""Does breaking symmetry pay where the data is not symmetric? Each relaxed or approximate arm's gain over its exact
reference against the measured asymmetry of its condition's data (``asymmetry.parquet``, written by a sweep with
``asymmetry: true``; ``equisweep.datamodules.asymmetry``: 0.5 invariant data, toward 1 a preferred orientation)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from equisweep.errors import UserError
from equisweep.names import gaussian_params, regime_key
from equisweep.pipeline.report import arms as a
from equisweep.pipeline.report.comparison import MIN_SEEDS_FOR_INTERVAL
from equisweep.pipeline.report.figures import common
from equisweep.pipeline.report.verdict import PAPERS_PAIR, REFERENCE
from equisweep.pipeline.sweep.asymmetry_table import KEY, measured_group

POINT_COLUMNS = ["arm", "condition", "metric", *KEY, "gain", "gain_low", "gain_high", "asymmetry", "low", "high"]


def asymmetry_points(table: pd.DataFrame, conditions: Sequence[str], results: pd.DataFrame,
                     asymmetry: pd.DataFrame) -> pd.DataFrame:
    """The points ``gain_by_asymmetry`` draws, in ``POINT_COLUMNS``: one per compared row of the verdict table
    ``table`` (condition columns ``conditions``) against its same-size (or nearest) reference, with a difference and
    a measured condition. Reference rows and the paper's-pair rows are left out. ``gain``, ``gain_low`` and
    ``gain_high``: the difference and its interval in points (NaN where the verdict shows none); ``asymmetry``, ``low``
    and ``high``: the measured accuracy of telling ``x`` from ``g·x`` and its interval. A row's dataset, regime and
    group are its condition's, or where they do not vary, the compared trials' one value (``results``)."""
    rows = table[(table["verdict"] != REFERENCE) & (table["reference"] != PAPERS_PAIR) & table["diff"].notna()]
    # no bars where the verdict table shows none: too few seeds for the interval to mean anything
    interval = np.minimum(rows["arm_n"], rows["exact_n"]).to_numpy() >= MIN_SEEDS_FOR_INTERVAL
    compared = a.finished(results)
    compared = compared[~compared["group"].map(a.is_trivial)] if "group" in compared else compared
    keys = {}
    for column in KEY:
        if column in conditions:
            keys[column] = rows[column].to_numpy()
        else:
            values = compared[column].dropna().unique() if column in compared else []
            keys[column] = [values[0] if len(values) == 1 else None] * len(rows)
    points = pd.DataFrame({"arm": rows["arm"].to_numpy(), "condition": rows["condition"].to_numpy(),
                           "metric": rows["metric"].to_numpy(), **keys, "gain": 100.0 * rows["diff"].to_numpy(float),
                           "gain_low": np.where(interval, 100.0 * rows["ci_low"].to_numpy(float), np.nan),
                           "gain_high": np.where(interval, 100.0 * rows["ci_high"].to_numpy(float), np.nan)})
    points["group"] = [None if g is None else measured_group(g) for g in points["group"]]
    measured = asymmetry[[*KEY, "asymmetry", "low", "high"]].copy()
    for frame in (points, measured):
        frame["regime"] = frame["train_symmetry"].map(_regime)
    merged = points.drop(columns="train_symmetry").merge(
        measured.drop(columns="train_symmetry"), on=["dataset", "regime", "group"], how="inner", sort=False)
    return merged.rename(columns={"regime": "train_symmetry"})[POINT_COLUMNS]


def _regime(value: object) -> str | None:
    """A training regime as it matches across tables: Gaussian by its numbers, any other by its spelling."""
    if value is None:
        return None
    params = gaussian_params(value)
    return f"gaussian({params[0]:g},{params[1]:g})" if params else regime_key(value)


def gain_by_asymmetry(points: pd.DataFrame, colours: dict[str, str] | None = None,
                      metrics: Sequence[str] | None = None) -> Figure:
    """``points`` (``asymmetry_points``) drawn one panel per metric: x the measured asymmetry of the data with its
    interval as horizontal bars, y the arm's gain over its exact reference in points with the verdict's interval
    as vertical bars; one colour (``colours``, see ``arms.colours``) and marker per arm; dashed lines at no gain and
    at invariant data (0.5)."""
    common.require(points, POINT_COLUMNS, "gain_by_asymmetry")
    if points.empty:
        raise UserError("gain_by_asymmetry: no compared arm has a measured asymmetry of its data")
    metrics = [c for c in (metrics or common.ACCURACY_METRICS) if c in set(points["metric"])]
    arms = list(dict.fromkeys(points["arm"]))
    colours = {arm: (colours or {}).get(arm, a.PALETTE[i % len(a.PALETTE)]) for i, arm in enumerate(arms)}
    markers = {arm: common.MARKERS[i % len(common.MARKERS)] for i, arm in enumerate(arms)}
    left = min(0.45, float(points["low"].min()) - 0.02)

    fig = Figure(layout="constrained")
    axes = common.panels(fig, len(metrics), 3.8, 3.2)
    for ax, metric in zip(axes, metrics):
        for row in points[points["metric"] == metric].itertuples():
            ybars = [[row.gain - row.gain_low], [row.gain_high - row.gain]] if np.isfinite(row.gain_low) else None
            ax.errorbar([row.asymmetry], [row.gain], xerr=[[row.asymmetry - row.low], [row.high - row.asymmetry]],
                        yerr=ybars, color=colours[row.arm], marker=markers[row.arm], markersize=6, capsize=3,
                        linestyle="", gid="asymmetry-point")
        ax.axhline(0.0, color="0.3", linestyle="--", linewidth=0.8, zorder=0)
        ax.axvline(0.5, color="0.3", linestyle="--", linewidth=0.8, zorder=0)
        ax.set_xlim(left, 1.02)
        ax.set_title(common.METRIC_LABELS.get(metric, metric), fontsize=10)
        ax.set_xlabel("asymmetry of the data (accuracy telling x from g·x)", fontsize=9)
        ax.set_ylabel("gain over exact reference (points)", fontsize=9)
        ax.grid(alpha=0.25, linewidth=0.6)
    common.legend_below(fig, [Line2D([], [], color=colours[arm], marker=markers[arm], linestyle="", label=arm)
                              for arm in arms])
    return fig
