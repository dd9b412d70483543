"""What breaking symmetry bought: each arm's accuracy gain over its exact reference against its measured output
equivariance error after training."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from equisweep.errors import UserError
from equisweep.pipeline.report import arms as a
from equisweep.pipeline.report.figures import common
from equisweep.pipeline.report.verdict import ALL_TRIALS, PAPERS_PAIR


def relaxation_gain(table: pd.DataFrame, colours: dict[str, str] | None = None, metrics: Sequence[str] | None = None,
                    floor: float = 1e-8) -> Figure:
    """Accuracy gained over the exact reference against the measured output equivariance error after training, per
    arm and condition, one panel per metric: does an arm win where it broke its symmetry?

    ``table`` is a verdict table (``verdict_table(...).table``) with ``arm_eq_error``. Each compared row is a point:
    x the arm's mean ``eq_error`` over seeds (log scale; values below ``floor``, an arm that stayed exact, drawn at
    it, a dotted line marks it), y its mean accuracy minus its reference's in points, error bars its confidence
    interval where it was tested. Colour: the arm (``colours``, see ``arms.colours``; the palette in table order
    otherwise); marker: the condition (training regime, dataset, ...). Reference rows and the paper's-pair rows of
    an arm that has a same-size reference are left out.
    """
    common.require(table, ["condition", "metric", "arm", "diff", "arm_eq_error"], "relaxation_gain")
    rows = table[(table["verdict"] != "reference") & table["arm_eq_error"].notna()] if "verdict" in table else table
    if "reference" in rows:  # one point per arm: its own reference, not the paper's pair beside it
        rows = rows[rows["reference"] != PAPERS_PAIR]
    if rows.empty:
        raise UserError("relaxation_gain: no compared arm has a measured equivariance error (eq_error)")
    metrics = [c for c in (metrics or common.ACCURACY_METRICS) if c in set(rows["metric"])]
    arms = list(dict.fromkeys(rows["arm"]))
    colours = {arm: (colours or {}).get(arm, a.PALETTE[i % len(a.PALETTE)]) for i, arm in enumerate(arms)}
    conditions = list(dict.fromkeys(rows["condition"]))
    markers = {c: common.MARKERS[i % len(common.MARKERS)] for i, c in enumerate(conditions)}

    fig = Figure(layout="constrained")
    axes = common.panels(fig, len(metrics), 3.8, 3.2)
    for ax, metric in zip(axes, metrics):
        for row in rows[rows["metric"] == metric].itertuples():
            y = 100.0 * row.diff
            low, high = (100.0 * getattr(row, "ci_low", np.nan), 100.0 * getattr(row, "ci_high", np.nan))
            bars = [[y - low], [high - y]] if np.isfinite(low) else None
            ax.errorbar([max(row.arm_eq_error, floor)], [y], yerr=bars, color=colours[row.arm],
                        marker=markers[row.condition], markersize=6, capsize=3, linestyle="", gid="gain-point",
                        label=f"{row.arm} · {row.condition}")
        ax.axhline(0.0, color="0.3", linewidth=0.8, zorder=0)
        ax.axvline(floor, color="0.5", linestyle=":", linewidth=0.8, zorder=0)
        ax.set_xscale("log")
        ax.set_title(common.METRIC_LABELS.get(metric, metric), fontsize=10)
        ax.set_xlabel("output equivariance error after training", fontsize=9)
        ax.set_ylabel("gain over exact reference (points)", fontsize=9)
        ax.grid(alpha=0.25, linewidth=0.6)
    handles = [Line2D([], [], color=colours[arm], marker="o", linestyle="", label=arm) for arm in arms]
    if len(conditions) > 1 or conditions != [ALL_TRIALS]:
        handles += [Line2D([], [], color="0.25", marker=markers[c], linestyle="", label=c) for c in conditions]
    common.legend_below(fig, handles)
    return fig
