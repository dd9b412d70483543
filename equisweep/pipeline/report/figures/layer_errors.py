"""Measured equivariance error per layer after training, one panel per group, one series per arm."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from equisweep.errors import UserError
from equisweep.pipeline.report import arms as a
from equisweep.pipeline.report.arms import REGIME
from equisweep.pipeline.report.figures.common import MARKERS, legend_below, panels, require, select
from equisweep.pipeline.vocabulary import LAYER_ERROR_PREFIX


def layer_errors(results: pd.DataFrame, by_regime: bool = True, floor: float = 1e-8, include_trivial: bool = True
                 ) -> Figure:
    """Measured relative equivariance error per layer, one panel per group (per model and group when the model
    varies), the plain CNN (judged against p4's quarter turns) in its own panel after the others.

    x: the ``eq_error/<layer>`` columns in table order (network order), leaving out layers a panel's model lacks;
    y: relative error on a log scale, values below ``floor`` drawn at it (a dotted line marks it). Each series is
    the mean over seeds with min..max error bars, coloured by its arm (``arms.colours``), exact solid, approximate
    dashed, plain CNN dotted. ``by_regime``: one series per (arm, regime), the marker telling the regimes apart;
    otherwise regimes pooled. Series are nudged sideways a little so their bars do not hide each other.
    """
    table = a.finished_arms(results)
    layers = [c for c in table.columns if str(c).startswith(LAYER_ERROR_PREFIX)]
    if not layers or table.empty or table[layers].isna().all().all():
        raise UserError("layer_errors: no finished trial has per-layer equivariance errors (eq_error/<layer>)")
    require(table, ["group"], "results")
    columns = a.arm_columns(table)
    colours = a.colours(results)
    by_regime = by_regime and REGIME in table
    regimes = sorted(table[REGIME].unique(), key=a.regime_order) if by_regime else [None]
    markers = {r: MARKERS[i % len(MARKERS)] for i, r in enumerate(regimes)}
    panel_cols = [c for c in ("dataset", "model") if c in table and table[c].nunique() > 1] + ["group"]
    groups = sorted((p for p in a.arms(table, panel_cols) if include_trivial or not a.is_trivial(p[-1])),
                    key=lambda p: (a.is_trivial(p[-1]), a.arm_sort(panel_cols, p)))
    if not groups:
        raise UserError("layer_errors: only plain-CNN trials, and include_trivial is off")

    fig = Figure(layout="constrained")
    axes = panels(fig, len(groups), max(3.6, 0.45 * len(layers) + 1.2), 3.2)
    legend: dict[str, Any] = {}
    for ax, panel in zip(axes, groups):
        in_panel = select(table, panel_cols, panel)
        present = [c for c in layers if in_panel[c].notna().any()]
        series = [(key, regime) for key in a.arms(table, columns) for regime in regimes
                  if not _rows(in_panel, columns, key, regime).empty]
        for n, (key, regime) in enumerate(series):
            arm = dict(zip(columns, key))
            x = np.arange(len(present)) + 0.25 * ((n + 0.5) / len(series) - 0.5)
            _series(ax, x, _rows(in_panel, columns, key, regime)[present].to_numpy(dtype=float), floor,
                    colours[a.label(arm)], a.linestyle(arm), markers[regime],
                    f"{a.label(arm)} · {regime}" if by_regime else a.label(arm))
            legend.setdefault(f"arm {a.label(arm)}", Line2D([], [], color=colours[a.label(arm)], linewidth=2,
                                                            linestyle=a.linestyle(arm), label=a.label(arm)))
            if by_regime:
                legend.setdefault(f"regime {regime}", Line2D([], [], color="0.25", marker=markers[regime],
                                                             linestyle="", label=f"trained: {regime}"))
        _style(ax, panel, present, floor)
    legend_below(fig, [h for k, h in legend.items() if k.startswith("arm ")]
                 + [h for k, h in legend.items() if k.startswith("regime ")])
    return fig


def _rows(in_panel: pd.DataFrame, columns: list[str], key: tuple, regime: Any) -> pd.DataFrame:
    return select(in_panel if regime is None else in_panel[in_panel[REGIME] == regime], columns, key)


def _series(ax, x: np.ndarray, values: np.ndarray, floor: float, colour: str, style: str, marker: str,
            label: str) -> None:
    """The mean over seeds per layer with min..max bars, floored for the log scale; a layer the arm has no value for
    (a wrapped net reports its output alone) is left out."""
    measured = ~np.isnan(values).all(axis=0)
    x, values = x[measured], values[:, measured]
    mean = np.clip(np.nanmean(values, axis=0), floor, None)
    low = np.clip(np.nanmin(values, axis=0), floor, None)
    high = np.clip(np.nanmax(values, axis=0), floor, None)
    # the mean of equal values can round past their min or max: clip the bars at zero length
    bars = np.clip([mean - low, high - mean], 0, None)
    ax.errorbar(x, mean, yerr=bars, color=colour, marker=marker, markersize=4, linestyle=style, linewidth=1.3,
                capsize=2, label=label)


def _style(ax, panel: tuple, present: list[str], floor: float) -> None:
    ax.set_yscale("log")
    ax.axhline(floor, color="0.5", linestyle=":", linewidth=0.8, zorder=0)
    ax.set_ylim(bottom=floor / 2)
    ax.set_xticks(range(len(present)), [c[len(LAYER_ERROR_PREFIX):] for c in present],
                  rotation=45 if len(present) > 4 else 0, ha="right" if len(present) > 4 else "center", fontsize=8)
    name = " ".join(str(v) for v in panel[:-1]) + (" " if len(panel) > 1 else "")
    ax.set_title(f"{name}plain CNN (vs p4 quarter turns)" if a.is_trivial(panel[-1]) else name + str(panel[-1]),
                 fontsize=10)
    ax.set_ylabel("relative equivariance error", fontsize=9)
    ax.grid(alpha=0.25, linewidth=0.6, which="major")
