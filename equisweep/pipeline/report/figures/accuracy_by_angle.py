"""Test accuracy against test rotation angle, one panel per training regime, one curve per arm.

An angle at which the data leaves the label undefined (its source's label action: a 6 turned by 90 degrees is
neither class of mnist6-180) has no accuracy in the table: only defined angles are drawn, and no line crosses one
that is missing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from equisweep.errors import UserError
from equisweep.names import gaussian_params
from equisweep.pipeline.report import arms as a
from equisweep.pipeline.report.arms import REGIME
from equisweep.pipeline.report.figures.common import grid, legend_below, require, select

TRAINING_ANGLES = "training angles"
OVERLAY_GID = "training-angles"  # the gid of every training-angle overlay artist
BAND_GID = "band"  # the gid of every ± one std band
DENSITY_AXIS = "training angles"  # the label of each small axis that shows a panel's training angles


def accuracy_by_angle(results: pd.DataFrame, angles: pd.DataFrame, arms: Sequence[str] | None = None,
                      percent: bool = True, close_circle: bool = True) -> Figure:
    """Test accuracy against test angle, one panel per training regime, one curve per arm.

    Each curve is the mean over seeds with a shaded band of ± one standard deviation (none where an angle has a single
    seed). x runs 0..360 degrees with ticks every 45; with ``close_circle`` the 0-degree value is repeated at 360; where
    ``dataset`` varies, one panel per dataset and regime. A curve breaks where angles of the sweep are missing (their
    labels undefined), leaving the defined ones as marked points. Under each panel, on its own small axis (labelled
    ``DENSITY_AXIS``, sharing x), what the regime trains on: a Gaussian's density wrapped onto [0, 360) (per degree),
    uniform's flat density, marks at the quarter turns for c4/d4 and at 0 for none/flip, so the accuracy axis carries
    accuracies only. ``arms`` overrides ``arms.arm_columns``; colours follow ``arms.colours``.
    """
    require(results, ["trial_id", REGIME], "results")
    require(angles, ["trial_id", "angle", "accuracy"], "angles")
    table = a.finished_arms(results)
    columns = list(arms) if arms is not None else a.arm_columns(table)
    require(table, columns, "results")
    datasets = "dataset" in table and table["dataset"].nunique() > 1
    data_columns = ["dataset", REGIME] if datasets else [REGIME]
    data = _by_angle(table, angles, [*data_columns, *columns])
    regimes = a.arms(data, data_columns)  # the panels: (dataset,) regime
    all_arms = a.arms(data, columns)
    labels = {key: a.label(dict(zip(columns, key))) for key in all_arms}
    palette = a.colours(results) if arms is None else {}
    colours = {key: palette.get(labels[key], a.PALETTE[i % len(a.PALETTE)]) for i, key in enumerate(all_arms)}
    styles = {key: a.linestyle(dict(zip(columns, key))) for key in all_arms}

    fig = Figure(layout="constrained")
    axes, density_axes = _axes(fig, len(regimes))
    scale = 100.0 if percent else 1.0
    step = _sweep_step(data["angle"])
    for ax, density_ax, regime in zip(axes, density_axes, regimes):
        in_regime = select(data, data_columns, regime)
        for key in all_arms:
            arm = select(in_regime, columns, key)
            if not arm.empty:
                _curve(ax, arm, scale, step, close_circle, colours[key], styles[key], labels[key])
        _training_angles(density_ax, regime[-1])
        ax.set_title(f"{regime[0]} · " * datasets + f"trained: {regime[-1]}", fontsize=10)
        _style(ax, density_ax, percent)
    low = max(0.0, min(ax.get_ylim()[0] for ax in axes))
    axes[0].set_ylim(low, min(axes[0].get_ylim()[1], 1.02 * scale))
    handles: list = [Line2D([], [], color=colours[k], linestyle=styles[k], linewidth=1.6, label=labels[k])
                     for k in all_arms]
    handles.append(Patch(facecolor="0.55", alpha=0.5, label=f"{TRAINING_ANGLES} (lower axes)"))
    legend_below(fig, handles)
    return fig


def _by_angle(table: pd.DataFrame, angles: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Each finished trial's accuracy per test angle (in [0, 360)) with its ``columns``."""
    data = angles[["trial_id", "angle", "accuracy"]].merge(table[["trial_id", *columns]], on="trial_id")
    data = data.dropna(subset=["angle", "accuracy"])
    if data.empty:
        raise UserError("accuracy_by_angle: no finished trial has test accuracies by angle yet")
    data["angle"] = np.mod(data["angle"].astype(float), 360.0)
    return data


def _sweep_step(angles: pd.Series) -> float:
    """The spacing of the test angles: the smallest gap between two tested in any trial, at most a quarter turn (the
    coarsest grid on which two defined angles can be neighbours)."""
    gaps = np.diff(np.unique(np.append(angles.to_numpy(dtype=float), 360.0)))
    return float(min(gaps.min(), 90.0))


def _axes(fig: Figure, n: int) -> tuple[list, list]:
    """``n`` accuracy axes sharing y, each with a small training-angle axis under it sharing its x."""
    nrows, ncols = grid(n)
    fig.set_size_inches(4.2 * ncols + 0.6, 3.8 * nrows + 0.9)
    layout = fig.add_gridspec(2 * nrows, ncols, height_ratios=[4, 1] * nrows)
    axes, density_axes = [], []
    for i in range(n):
        row, col = divmod(i, ncols)
        ax = fig.add_subplot(layout[2 * row, col], sharey=axes[0] if axes else None)
        density_axes.append(fig.add_subplot(layout[2 * row + 1, col], sharex=ax, label=DENSITY_AXIS))
        axes.append(ax)
    return axes, density_axes


def _curve(ax, arm: pd.DataFrame, scale: float, step: float, close_circle: bool, colour: str, style: str,
           label: str) -> None:
    """One arm's mean accuracy over seeds per angle, with a band of ± one std where an angle has several seeds; a gap
    wider than ``step`` (an angle left out) breaks the line."""
    stats = arm.groupby("angle")["accuracy"].agg(["mean", "std", "count"]).sort_index()
    x = stats.index.to_numpy(dtype=float)
    mean, std = stats["mean"].to_numpy() * scale, stats["std"].to_numpy() * scale
    count = stats["count"].to_numpy()
    if close_circle and len(x) > 1 and x[0] == 0.0:
        x, mean, std, count = (np.append(x, 360.0), np.append(mean, mean[0]), np.append(std, std[0]),
                               np.append(count, count[0]))
    gaps = np.flatnonzero(np.diff(x) > step * (1 + 1e-9)) + 1
    if gaps.size:  # NaN between two defined angles: matplotlib draws neither line nor band across it
        x, mean, std, count = (np.insert(v.astype(float), gaps, np.nan) for v in (x, mean, std, count))
    ax.plot(x, mean, color=colour, linestyle=style, linewidth=1.6, marker="o" if len(x) <= 12 or gaps.size else None,
            markersize=3, label=label, gid=f"arm:{label}")
    spread = count > 1
    if spread.any():
        ax.fill_between(x, mean - std, mean + std, where=spread, interpolate=False, color=colour, alpha=0.18,
                        linewidth=0, gid=BAND_GID, label=f"_band {label}")


def _style(ax, density_ax, percent: bool) -> None:
    ax.set_xlim(0, 360)
    ax.set_xticks(np.arange(0, 361, 45))
    ax.tick_params(axis="x", labelbottom=False)
    ax.set_ylabel("test accuracy (%)" if percent else "test accuracy (fraction)", fontsize=9)
    ax.grid(alpha=0.25, linewidth=0.6)
    density_ax.tick_params(axis="x", labelsize=8)
    density_ax.tick_params(axis="y", labelleft=False, left=False)
    density_ax.set_ylim(bottom=0)
    density_ax.set_ylabel("train", fontsize=8)
    density_ax.set_xlabel("test rotation (degrees)", fontsize=9)
    density_ax.grid(alpha=0.25, linewidth=0.6, axis="x")


def _training_angles(ax, regime: str) -> None:
    """Draw on ``ax`` (its own axis) what ``regime`` trains on: a density per degree, or marks at fixed angles."""
    style = {"color": "0.55", "alpha": 0.5, "linewidth": 0, "gid": OVERLAY_GID, "label": f"_{TRAINING_ANGLES}"}
    params = gaussian_params(regime)
    if params is not None:
        x = np.linspace(0.0, 360.0, 721)
        ax.fill_between(x, 0.0, wrapped_normal_pdf(x, *params), **style)
    elif regime == "uniform":
        ax.fill_between([0.0, 360.0], 0.0, [1 / 360.0] * 2, **style)
    elif regime in ("c4", "d4", "none", "flip"):
        turns = [0.0, 90.0, 180.0, 270.0, 360.0] if regime in ("c4", "d4") else [0.0, 360.0]
        ax.vlines(turns, 0.0, 1.0, transform=ax.get_xaxis_transform(), colors="0.55", alpha=0.7, linewidth=3,
                  gid=OVERLAY_GID, label=f"_{TRAINING_ANGLES}")


def wrapped_normal_pdf(angles: np.ndarray, mean: float, std: float) -> np.ndarray:
    """Density (per degree) of a normal(mean, std) angle folded onto [0, 360)."""
    angles = np.asarray(angles, dtype=float)
    if std <= 0:
        return np.zeros_like(angles)
    turns = max(2, math.ceil(6 * std / 360) + 1)
    k = np.arange(-turns, turns + 1)[:, None]
    z = (angles[None, :] - mean + 360.0 * k) / std
    return np.exp(-0.5 * z**2).sum(axis=0) / (std * math.sqrt(2 * math.pi))
