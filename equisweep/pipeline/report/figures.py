"""The report's figures, drawn from a sweep's tables (``results.parquet``, ``angles.parquet``, a verdict table).

Every function takes DataFrames and returns a ``matplotlib.figure.Figure`` built directly (no pyplot, so no global
figure registry: safe in threads, nothing leaks); ``save_figure`` writes it as PNG and SVG. Only finished trials
are drawn. Nothing here imports training code: matplotlib, numpy and pandas only (the package's light modules
for names).

Conventions shared by the figures:

- An *arm* is one model of the study: ``(group, input_size, exact)`` plus every other setting that varies across
  cells (``relaxation``, ``subsampling``, ...; not ``seed``, not the data: ``dataset`` and the training regime, not
  a searched hyperparameter), labelled as everywhere else (``equisweep.pipeline.train.arms.arm_label``: ``p4 28
  exact``, ``p4 29 approx``, ``p4 29 adaptive exact``, ``p4 28 rpp``, ``plain CNN 28``), then ``key=value`` for the
  others. ``arm_colours`` gives each arm of a sweep one colour, which it keeps in every figure; exact arms are
  solid, approximate dashed, relaxed dash-dotted, plain-CNN arms dotted.
- The data a trial learns from (``dataset`` where it varies, and the training regime) picks the panel, not the arm.
- A cell that holds several trials of an Optuna search is represented by its trial with the best ``val_acc``.
- Training regimes (``train_symmetry``) are ordered none, flip, Gaussian (by std, then mean), c4, d4, uniform.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.colors import Normalize, to_rgba
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from equisweep.errors import UserError
from equisweep.pipeline.report.verdict import (
    ALL_TRIALS,
    ARM_DEFAULTS,
    NOT_SETTINGS,
    REGIME,
    REPORT_METRICS,
    gaussian_params,
    regime_order,
    without_trivial_exactness,
)
from equisweep.pipeline.train import arms as arm_names
from equisweep.pipeline.train import metrics as m
from equisweep.pipeline.train.metrics import LAYER_ERROR_PREFIX

ACCURACY_METRICS = tuple(REPORT_METRICS)
METRIC_LABELS = {**REPORT_METRICS, m.VAL_ACC: "validation"}
TRAINING_ANGLES = "training angles"
OVERLAY_GID = "training-angles"  # the gid of every training-angle overlay artist
BAND_GID = "band"  # the gid of every ± one std band
DENSITY_AXIS = "training angles"  # the label of each small axis that shows a panel's training angles
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f",
           "#bcbd22")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
DATA_COLUMNS = ("dataset", REGIME)  # what a trial learns from: a panel of the figures, never part of an arm


# ---------------------------------------------------------------------------------------------------------------
# shared helpers


def wrapped_normal_pdf(angles: np.ndarray, mean: float, std: float) -> np.ndarray:
    """Density (per degree) of a normal(mean, std) angle folded onto [0, 360)."""
    angles = np.asarray(angles, dtype=float)
    if std <= 0:
        return np.zeros_like(angles)
    turns = max(2, math.ceil(6 * std / 360) + 1)
    k = np.arange(-turns, turns + 1)[:, None]
    z = (angles[None, :] - mean + 360.0 * k) / std
    return np.exp(-0.5 * z**2).sum(axis=0) / (std * math.sqrt(2 * math.pi))


def finished_trials(results: pd.DataFrame) -> pd.DataFrame:
    """The finished trials, one per cell: a cell searched by Optuna keeps its trial with the best ``val_acc``;
    ``exact`` is None (not applicable) for a plain CNN, whatever an older table says."""
    table = results[results["status"] == "finished"] if "status" in results else results
    table = without_trivial_exactness(table)
    if "cell" not in table or table["cell"].isna().all() or not table["cell"].dropna().duplicated().any():
        return table.copy()
    has_cell = table["cell"].notna()
    ranked = table[has_cell].assign(_rank=table[has_cell][m.VAL_ACC].fillna(-np.inf) if m.VAL_ACC in table else 0.0)
    best = ranked.sort_values("_rank", ascending=False, kind="stable").drop_duplicates("cell").drop(columns="_rank")
    kept = set(best.index) | set(table.index[~has_cell])
    return table.loc[[index for index in table.index if index in kept]].copy()


def setting_columns(results: pd.DataFrame) -> list[str]:
    """The run-setting columns of a results table: everything but identity, status, verdict and metrics."""
    return [c for c in results.columns if c not in NOT_SETTINGS and not str(c).startswith(m.PER_LAYER_PREFIXES)]


def arm_columns(results: pd.DataFrame) -> list[str]:
    """What defines an arm: group, input size, exact, then every other setting that varies across cells and is
    constant inside each cell (so a searched hyperparameter is not one), except seed and the data (dataset,
    regime)."""
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


def _is_trivial(group: Any) -> bool:
    return arm_names.is_trivial(str(group).strip().lower())


def _group_order(group: Any) -> tuple:
    name = str(group).lower()
    named = {"z2": 0, "c1": 0, "p4": 1, "c4": 1, "p4m": 2, "d4": 2}
    if name in named:
        return (named[name], 0, name)
    match = re.match(r"^([cd])(\d+)$", name)
    return (3 + (match.group(1) == "d"), int(match.group(2)), name) if match else (5, 0, name)


def _sortable(value: Any) -> tuple:
    if _missing(value):
        return (2, 0, "")
    if isinstance(value, bool | np.bool_):
        return (0, -int(value), "")  # exact before approximate
    if isinstance(value, int | float | np.integer | np.floating):
        return (0, float(value), "")
    return (1, 0, str(value))


def _arm_key(columns: Sequence[str], row: pd.Series | tuple) -> tuple:
    return tuple(row[c] for c in columns) if isinstance(row, pd.Series) else tuple(row)


def _arm_sort(columns: Sequence[str], key: tuple) -> tuple:
    return tuple(_group_order(v) if c == "group" else regime_order(v) if c == REGIME else _sortable(v)
                 for c, v in zip(columns, key))


def _exactness(value: Any) -> bool | None:
    if _missing(value):
        return None
    return bool(value)


def arm_label(columns: Sequence[str], key: tuple) -> str:
    """``p4 28 exact``, ``p4 29 approx``, ``p4 28 rpp``, ``plain CNN 28``; other arm settings follow as
    ``key=value``."""
    values = dict(zip(columns, key))
    exact = _exactness(values.get(m.EXACT))
    named = {c: default if _missing(values.get(c)) else str(values[c]) for c, default in ARM_DEFAULTS.items()}
    head = arm_names.arm_label(str(values.get("group", "")), values.get("input_size", ""), exact, **named)
    parts = [head.strip()] + [f"{c}={_fmt(values[c])}" for c in columns
                              if c not in ("group", "input_size", m.EXACT, *ARM_DEFAULTS)]
    return " ".join(part for part in parts if part) or "all trials"


def arm_colours(results: pd.DataFrame) -> dict[str, str]:
    """One colour per arm of the finished trials, keyed by its label: the same arm has the same colour in every
    figure of a sweep, whichever subset a figure draws."""
    table = finished_trials(results)
    columns = arm_columns(table)
    return {arm_label(columns, key): PALETTE[i % len(PALETTE)] for i, key in enumerate(_arms(table, columns))}


def _linestyle(columns: Sequence[str], key: tuple) -> str:
    values = dict(zip(columns, key))
    if _is_trivial(values.get("group")):
        return ":"
    relaxation = values.get("relaxation")
    if not _missing(relaxation) and relaxation != ARM_DEFAULTS["relaxation"]:
        return "-."
    return "--" if _exactness(values.get(m.EXACT)) is False else "-"


def _arms(table: pd.DataFrame, columns: Sequence[str]) -> list[tuple]:
    keys = {_arm_key(columns, k if isinstance(k, tuple) else (k,))
            for k in table.groupby(list(columns), dropna=False).groups} if columns else {()}
    return sorted(keys, key=lambda k: _arm_sort(columns, k))


def _missing(value: Any) -> bool:
    return value is None or (np.ndim(value) == 0 and bool(pd.isna(value)))


def _same(a: Any, b: Any) -> bool:
    if _missing(a) or _missing(b):
        return _missing(a) and _missing(b)
    return bool(a == b)


def _select(table: pd.DataFrame, columns: Sequence[str], key: tuple) -> pd.DataFrame:
    mask = np.ones(len(table), dtype=bool)
    for column, value in zip(columns, key):
        mask &= np.array([_same(v, value) for v in table[column]], dtype=bool)
    return table[mask]


def _grid(n: int) -> tuple[int, int]:
    """Rows and columns for ``n`` panels: one row up to 3, then 2, 3 or 4 columns."""
    ncols = n if n <= 3 else 2 if n == 4 else 3 if n <= 6 or n == 9 else 4
    return math.ceil(n / ncols), ncols


def _panels(fig: Figure, n: int, width: float, height: float, sharey: bool = True) -> list:
    nrows, ncols = _grid(n)
    fig.set_size_inches(width * ncols + 0.6, height * nrows + 0.9)
    axes = fig.subplots(nrows, ncols, sharey=sharey, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.remove()
    for i, ax in enumerate(axes[:n]):
        if sharey and i % ncols:
            ax.tick_params(labelleft=True)  # shared limits, but every panel keeps its numbers
    return list(axes[:n])


def _require(table: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in table]
    if missing:
        raise UserError(f"{what}: the table has no column {missing[0]!r} (columns: {', '.join(map(str, table))})")


# ---------------------------------------------------------------------------------------------------------------
# 1. accuracy by test angle


def accuracy_by_angle(results: pd.DataFrame, angles: pd.DataFrame, arms: Sequence[str] | None = None,
                      percent: bool = True, close_circle: bool = True) -> Figure:
    """Test accuracy against test angle, one panel per training regime, one curve per arm.

    Each curve is the mean over seeds with a shaded band of ± one standard deviation (none where an angle has a single
    seed). x runs 0..360 degrees with ticks every 45; with ``close_circle`` the 0-degree value is repeated at 360; where
    ``dataset`` varies, one panel per dataset and regime. Under each panel, on its own small axis (labelled
    ``DENSITY_AXIS``, sharing x), what the regime trains on: a Gaussian's density wrapped onto [0, 360) (per degree),
    uniform's flat density, marks at the quarter turns for c4/d4 and at 0 for none/flip, so the accuracy axis carries
    accuracies only. ``arms`` overrides ``arm_columns``; colours follow ``arm_colours``.
    """
    _require(results, ["trial_id", REGIME], "results")
    _require(angles, ["trial_id", "angle", "accuracy"], "angles")
    table = finished_trials(results)
    columns = list(arms) if arms is not None else arm_columns(table)
    _require(table, columns, "results")
    datasets = "dataset" in table and table["dataset"].nunique() > 1
    data_columns = ["dataset", REGIME] if datasets else [REGIME]
    data = angles[["trial_id", "angle", "accuracy"]].merge(table[["trial_id", *data_columns, *columns]],
                                                           on="trial_id")
    data = data.dropna(subset=["angle", "accuracy"])
    if data.empty:
        raise UserError("accuracy_by_angle: no finished trial has test accuracies by angle yet")
    data["angle"] = np.mod(data["angle"].astype(float), 360.0)
    scale = 100.0 if percent else 1.0

    regimes = _arms(data, data_columns)  # the panels: (dataset,) regime
    all_arms = _arms(data, columns)
    labels = {key: arm_label(columns, key) for key in all_arms}
    palette = arm_colours(results) if arms is None else {}
    colours = {key: palette.get(labels[key], PALETTE[i % len(PALETTE)]) for i, key in enumerate(all_arms)}

    fig = Figure(layout="constrained")
    nrows, ncols = _grid(len(regimes))
    fig.set_size_inches(4.2 * ncols + 0.6, 3.8 * nrows + 0.9)
    grid = fig.add_gridspec(2 * nrows, ncols, height_ratios=[4, 1] * nrows)
    axes, density_axes = [], []
    for i in range(len(regimes)):
        row, col = divmod(i, ncols)
        ax = fig.add_subplot(grid[2 * row, col], sharey=axes[0] if axes else None)
        density_axes.append(fig.add_subplot(grid[2 * row + 1, col], sharex=ax, label=DENSITY_AXIS))
        axes.append(ax)
    for ax, density_ax, regime in zip(axes, density_axes, regimes):
        in_regime = _select(data, data_columns, regime)
        for key in all_arms:
            arm = _select(in_regime, columns, key)
            if arm.empty:
                continue
            stats = arm.groupby("angle")["accuracy"].agg(["mean", "std", "count"]).sort_index()
            x = stats.index.to_numpy(dtype=float)
            mean, std = stats["mean"].to_numpy() * scale, stats["std"].to_numpy() * scale
            count = stats["count"].to_numpy()
            if close_circle and len(x) > 1 and x[0] == 0.0:
                x, mean, std, count = (np.append(x, 360.0), np.append(mean, mean[0]), np.append(std, std[0]),
                                       np.append(count, count[0]))
            ax.plot(x, mean, color=colours[key], linestyle=_linestyle(columns, key), linewidth=1.6,
                    marker="o" if len(x) <= 12 else None, markersize=3, label=labels[key], gid=f"arm:{labels[key]}")
            spread = count > 1
            if spread.any():
                ax.fill_between(x, mean - std, mean + std, where=spread, interpolate=False, color=colours[key],
                                alpha=0.18, linewidth=0, gid=BAND_GID, label=f"_band {labels[key]}")
        _training_angles(density_ax, regime[-1])
        ax.set_title(f"{regime[0]} · " * datasets + f"trained: {regime[-1]}", fontsize=10)
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
    low = max(0.0, min(ax.get_ylim()[0] for ax in axes))
    axes[0].set_ylim(low, min(axes[0].get_ylim()[1], 1.02 * scale))

    handles: list = [Line2D([], [], color=colours[k], linestyle=_linestyle(columns, k), linewidth=1.6, label=labels[k])
                     for k in all_arms]
    handles.append(Patch(facecolor="0.55", alpha=0.5, label=f"{TRAINING_ANGLES} (lower axes)"))
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4), fontsize=9, frameon=False)
    return fig


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


# ---------------------------------------------------------------------------------------------------------------
# 2. approximate minus exact


def _metric_rank(label: str) -> int:
    text = str(label).lower()
    for rank, word in enumerate(("upright", "orbit", "mean", "min")):
        if word in text:
            return rank
    return 4


def gap_map(table: pd.DataFrame, conditions: Sequence[str] | None = None, metrics: Sequence[str] | None = None,
            alpha: float = 0.05, title: str | None = None, colours: dict[str, str] | None = None) -> Figure:
    """Heatmap of each arm's accuracy minus its exact reference's, in points: rows are conditions (and arms),
    columns metrics.

    ``table`` is a verdict table with the ``conditions`` columns (by default every column before ``metric``),
    ``metric``, ``diff`` (arm − reference, a fraction), optionally ``arm`` (then one row per condition and arm),
    ``ci_low``/``ci_high``, ``p_adjusted`` (NaN when untested) and ``verdict``; reference rows (``verdict ==
    "reference"``) are left out. Rows keep the table's order, so the map reads like the table. Each cell shows
    ``diff`` in points (``+1.2``) with ``*`` when ``p_adjusted < alpha``, and its interval below; a cell that is
    not significant is muted (faded colour, grey text). The diverging colours are centred at 0 (blue: the arm
    better, red: the exact reference better); a combination missing from the table is grey. ``colours`` (arm label
    -> colour, see ``arm_colours``) colours each row's label as its arm.
    """
    _require(table, ["metric", "diff"], "gap_map")
    if conditions is None:
        conditions = list(table.columns[:list(table.columns).index("metric")])
    conditions = list(conditions)
    _require(table, conditions, "gap_map")
    if "verdict" in table:
        table = table[table["verdict"] != "reference"]
    if table.empty:
        raise UserError("gap_map: the verdict table is empty")
    keys = [*conditions, "arm"] if "arm" in table and "arm" not in conditions else conditions
    if table.duplicated([*keys, "metric"]).any():
        raise UserError(f"gap_map: several rows per ({', '.join([*keys, 'metric'])}); pass every condition "
                        "column that tells them apart as conditions=[...]")
    if metrics is None:
        seen = list(dict.fromkeys(table["metric"]))
        metrics = sorted(seen, key=lambda label: (_metric_rank(label), seen.index(label)))
    metrics = list(metrics)
    rows = list(dict.fromkeys(tuple(r) for r in table[keys].itertuples(index=False))) if keys else [()]
    values = np.full((len(rows), len(metrics)), np.nan)
    intervals = np.full((len(rows), len(metrics), 2), np.nan)
    marks = np.zeros_like(values, dtype=bool)
    for record in table.to_dict("records"):
        row_key = tuple(record[c] for c in keys)
        if record["metric"] not in metrics:
            continue
        i, j = rows.index(row_key), metrics.index(record["metric"])
        values[i, j] = 100.0 * float(record["diff"])
        intervals[i, j] = [100.0 * float(record.get("ci_low", np.nan)), 100.0 * float(record.get("ci_high", np.nan))]
        p = record.get("p_adjusted", np.nan)
        marks[i, j] = bool(pd.notna(p) and float(p) < alpha)

    fig = Figure(layout="constrained", figsize=(2.8 + 1.45 * len(metrics), 1.3 + 0.62 * len(rows)))
    ax = fig.add_subplot()
    _heatmap(fig, ax, values, intervals, marks, [_row_label(keys, r) for r in rows],
             [METRIC_LABELS.get(str(label), str(label)) for label in metrics])
    if colours and "arm" in keys:
        for tick, row in zip(ax.get_yticklabels(), rows):
            tick.set_color(colours.get(str(row[keys.index("arm")]), "black"))
    ax.set_ylabel(" × ".join(keys), fontsize=9)
    ax.set_title(title or f"arm − exact reference (accuracy points); * p_adjusted < {alpha:g}, others muted",
                 fontsize=10)
    return fig


def _row_label(conditions: Sequence[str], row: tuple) -> str:
    parts = [str(v) if c in (REGIME, "group", "arm") or isinstance(v, str) else f"{c}={_fmt(v)}"
             for c, v in zip(conditions, row)]
    return ", ".join(parts) or "all"


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float | np.floating) else str(value)


MUTED = 0.35  # the opacity of a cell whose difference is not significant


def _heatmap(fig: Figure, ax, values: np.ndarray, intervals: np.ndarray, marks: np.ndarray, row_labels: list[str],
             column_labels: list[str]) -> None:
    finite = np.abs(values[np.isfinite(values)])
    limit = max(float(finite.max()) if finite.size else 0.0, 0.5)
    cmap = _diverging()
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, norm=Normalize(-limit, limit), aspect="auto",
                      alpha=np.where(marks | ~np.isfinite(values), 1.0, MUTED))
    for (i, j), value in np.ndenumerate(values):
        if not np.isfinite(value):
            continue
        text = f"{value:+.1f}{'*' if marks[i, j] else ''}"
        low, high = intervals[i, j]
        if np.isfinite(low):
            text += f"\n[{low:+.1f}, {high:+.1f}]"
        colour = ("white" if abs(value) > 0.6 * limit else "black") if marks[i, j] else "0.35"
        ax.text(j, i, text, ha="center", va="center", fontsize=8, color=colour, gid="gap-value")
    ax.set_xticks(range(len(column_labels)), column_labels, fontsize=9)
    ax.set_yticks(range(len(row_labels)), row_labels, fontsize=9)
    ax.tick_params(length=0)
    ax.set_xticks(np.arange(-0.5, len(column_labels)), minor=True)
    ax.set_yticks(np.arange(-0.5, len(row_labels)), minor=True)
    ax.grid(which="minor", color="white", linewidth=1.5)
    ax.tick_params(which="minor", length=0)
    colorbar = fig.colorbar(image, ax=ax, shrink=0.9)
    colorbar.set_label("arm − reference (points)", fontsize=9)


def _diverging():
    return colormaps["RdBu"].with_extremes(bad=to_rgba("0.85"))


def gap_by(results: pd.DataFrame, axis: str = "gaussian_std", metrics: Sequence[str] | None = None,
           percent: bool = True) -> Figure:
    """Approximate minus exact accuracy against one swept axis, one panel per metric.

    ``axis`` is ``"gaussian_std"`` or ``"gaussian_mean"`` (read from Gaussian regimes; other regimes are left
    out), ``"input_size"`` (each approximate size against the exact arm of the same group and regime, pooled
    over its sizes) or any other results column (approximate against exact at each of its values). A stratum is a
    non-trivial group with the remaining arm settings and the regime (for Gaussian axes the other Gaussian
    parameter). Along ``input_size`` each stratum is a grey line whose points take their approximate arm's colour;
    along any other axis each approximate arm of a stratum is a line in its arm's colour (``arm_colours``); the
    marker tells the strata apart. Points are differences of means over seeds; error bars are ± one standard
    error of that difference where both sides have several seeds.
    """
    table = finished_trials(results)
    _require(table, ["group", m.EXACT], "results")
    metrics = [c for c in (metrics or ACCURACY_METRICS) if c in table and table[c].notna().any()]
    if not metrics:
        raise UserError("gap_by: the results have none of the metrics asked for")
    palette, full_columns = arm_colours(results), arm_columns(table)
    table = table[[not _is_trivial(g) and _exactness(e) is not None for g, e in zip(table["group"], table[m.EXACT])]]
    table = table.assign(**{m.EXACT: [bool(e) for e in table[m.EXACT]]})
    if axis in ("gaussian_std", "gaussian_mean"):
        _require(table, [REGIME], "results")
        params = [gaussian_params(r) for r in table[REGIME]]
        table = table.assign(gaussian_mean=[p[0] if p else np.nan for p in params],
                             gaussian_std=[p[1] if p else np.nan for p in params]).dropna(subset=[axis])
        other = "gaussian_mean" if axis == "gaussian_std" else "gaussian_std"
    else:
        _require(table, [axis], "results")
        other = REGIME if REGIME in table else None
    arm_cols = [c for c in arm_columns(table) if c not in (m.EXACT, "input_size", axis, REGIME)]
    strata_cols = arm_cols + ([other] if other else [])
    strata_cols = [c for c in dict.fromkeys(strata_cols) if c in table]
    if table.empty:
        raise UserError(f"gap_by: no finished trials of a non-trivial group vary {axis!r}")
    scale = 100.0 if percent else 1.0

    def colour(rows: pd.DataFrame) -> str:
        return palette.get(arm_label(full_columns, _arm_key(full_columns, rows.iloc[0])), "0.3")

    fig = Figure(layout="constrained")
    axes = _panels(fig, len(metrics), 3.8, 3.0, sharey=False)
    strata = _arms(table, strata_cols)
    markers = {key: MARKERS[i % len(MARKERS)] for i, key in enumerate(strata)}
    handles = {}
    for ax, metric in zip(axes, metrics):
        for key in strata:
            rows = _select(table, strata_cols, key)
            others = {c: v for c, v in zip(strata_cols, key) if c not in full_columns}  # the arm names the rest
            stratum = _row_label(list(others), tuple(others.values()))
            approx = rows[~rows[m.EXACT]]
            if axis == "input_size":
                xs, ys, errs = _gaps(rows, axis, metric)
                if not xs:
                    continue
                ax.plot(xs, np.array(ys) * scale, color="0.6", linewidth=1.2, marker=None, label=stratum)
                for x, y, err in zip(xs, ys, errs):
                    arm_rows = approx[approx["input_size"] == x]
                    ax.errorbar([x], [y * scale], yerr=[err * scale], color=colour(arm_rows), marker=markers[key],
                                markersize=5, capsize=3, linewidth=1.4, gid="gap-point")
                    label = arm_label(full_columns, _arm_key(full_columns, arm_rows.iloc[0]))
                    handles[label] = Line2D([], [], color=colour(arm_rows), marker="o", linestyle="", label=label)
                handles[stratum] = Line2D([], [], color="0.6", marker=markers[key], label=stratum)
                continue
            for size in sorted(approx["input_size"].unique()):
                arm_rows = approx[approx["input_size"] == size]
                xs, ys, errs = _gaps(pd.concat([rows[rows[m.EXACT]], arm_rows]), axis, metric)
                if not xs:
                    continue
                label = arm_label(full_columns, _arm_key(full_columns, arm_rows.iloc[0])) + (
                    f", {stratum}" if others else "")
                ax.errorbar(xs, np.array(ys) * scale, yerr=np.array(errs) * scale, color=colour(arm_rows),
                            marker=markers[key], markersize=4, capsize=3, linewidth=1.4, label=label)
                handles[label] = Line2D([], [], color=colour(arm_rows), marker=markers[key], label=label)
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
    if handles:
        fig.legend(handles=list(handles.values()), loc="outside lower center", ncols=min(len(handles), 4),
                   fontsize=9, frameon=False)
    return fig


def _gaps(rows: pd.DataFrame, axis: str, metric: str) -> tuple[list[float], list[float], list[float]]:
    def summary(values: pd.Series) -> tuple[float, float, int]:
        values = values.dropna()
        return float(values.mean()), float(values.var(ddof=1)) if len(values) > 1 else np.nan, len(values)

    xs, ys, errs = [], [], []
    exact_all = rows[rows[m.EXACT]]
    for value in sorted(rows[axis].dropna().unique(), key=_sortable):
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


# ---------------------------------------------------------------------------------------------------------------
# 3. what breaking symmetry bought


def relaxation_gain(table: pd.DataFrame, colours: dict[str, str] | None = None, metrics: Sequence[str] | None = None,
                    floor: float = 1e-8) -> Figure:
    """Accuracy gained over the exact reference against the measured output equivariance error after training, per
    arm and condition, one panel per metric: does an arm win where it broke its symmetry?

    ``table`` is a verdict table (``verdict_table(...).table``) with ``arm_eq_error``. Each compared row is a point:
    x the arm's mean ``eq_error`` over seeds (log scale; values below ``floor``, an arm that stayed exact, drawn at
    it, a dotted line marks it), y its mean accuracy minus its reference's in points, error bars its confidence
    interval where it was tested. Colour: the arm (``colours``, see ``arm_colours``; the palette in table order
    otherwise); marker: the condition (training regime, dataset, ...). Reference rows are left out.
    """
    _require(table, ["condition", "metric", "arm", "diff", "arm_eq_error"], "relaxation_gain")
    rows = table[(table["verdict"] != "reference") & table["arm_eq_error"].notna()] if "verdict" in table else table
    if rows.empty:
        raise UserError("relaxation_gain: no compared arm has a measured equivariance error (eq_error)")
    metrics = [c for c in (metrics or ACCURACY_METRICS) if c in set(rows["metric"])]
    arms = list(dict.fromkeys(rows["arm"]))
    colours = {arm: (colours or {}).get(arm, PALETTE[i % len(PALETTE)]) for i, arm in enumerate(arms)}
    conditions = list(dict.fromkeys(rows["condition"]))
    markers = {c: MARKERS[i % len(MARKERS)] for i, c in enumerate(conditions)}

    fig = Figure(layout="constrained")
    axes = _panels(fig, len(metrics), 3.8, 3.2)
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
        ax.set_title(METRIC_LABELS.get(metric, metric), fontsize=10)
        ax.set_xlabel("output equivariance error after training", fontsize=9)
        ax.set_ylabel("gain over exact reference (points)", fontsize=9)
        ax.grid(alpha=0.25, linewidth=0.6)
    handles = [Line2D([], [], color=colours[arm], marker="o", linestyle="", label=arm) for arm in arms]
    if len(conditions) > 1 or conditions != [ALL_TRIALS]:
        handles += [Line2D([], [], color="0.25", marker=markers[c], linestyle="", label=c) for c in conditions]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4), fontsize=9, frameon=False)
    return fig


# ---------------------------------------------------------------------------------------------------------------
# 4. measured equivariance error per layer


def layer_errors(results: pd.DataFrame, by_regime: bool = True, floor: float = 1e-8, include_trivial: bool = True
                 ) -> Figure:
    """Measured relative equivariance error per layer, one panel per group (per model and group when the model
    varies), the plain CNN (judged against p4's quarter turns) in its own panel after the others.

    x: the ``eq_error/<layer>`` columns in table order (network order), leaving out layers a panel's model lacks;
    y: relative error on a log scale, values below ``floor`` drawn at it (a dotted line marks it). Each series is
    the mean over seeds with min..max error bars, coloured by its arm (``arm_colours``), exact solid, approximate
    dashed, plain CNN dotted. ``by_regime``: one series per (arm, regime), the marker telling the regimes apart;
    otherwise regimes pooled. Series are nudged sideways a little so their bars do not hide each other.
    """
    table = finished_trials(results)
    layers = [c for c in table.columns if str(c).startswith(LAYER_ERROR_PREFIX)]
    if not layers or table.empty or table[layers].isna().all().all():
        raise UserError("layer_errors: no finished trial has per-layer equivariance errors (eq_error/<layer>)")
    _require(table, ["group"], "results")
    columns = arm_columns(table)
    all_arms = _arms(table, columns)
    colours = arm_colours(results)
    by_regime = by_regime and REGIME in table
    regimes = sorted(table[REGIME].unique(), key=regime_order) if by_regime else [None]
    markers = {r: MARKERS[i % len(MARKERS)] for i, r in enumerate(regimes)}
    panel_cols = [c for c in ("dataset", "model") if c in table and table[c].nunique() > 1] + ["group"]
    panels = _arms(table, panel_cols)
    panels = sorted((p for p in panels if include_trivial or not _is_trivial(p[-1])),
                    key=lambda p: (_is_trivial(p[-1]), _arm_sort(panel_cols, p)))
    if not panels:
        raise UserError("layer_errors: only plain-CNN trials, and include_trivial is off")

    fig = Figure(layout="constrained")
    width = max(3.6, 0.45 * len(layers) + 1.2)
    axes = _panels(fig, len(panels), width, 3.2)
    legend: dict[str, Any] = {}
    for ax, panel in zip(axes, panels):
        in_panel = _select(table, panel_cols, panel)
        present = [c for c in layers if in_panel[c].notna().any()]
        series = [(key, regime) for key in all_arms for regime in regimes
                  if not _select(in_panel if regime is None else in_panel[in_panel[REGIME] == regime], columns,
                                 key).empty]
        for n, (key, regime) in enumerate(series):
            rows = _select(in_panel if regime is None else in_panel[in_panel[REGIME] == regime], columns, key)
            values = rows[present].to_numpy(dtype=float)
            mean = np.clip(np.nanmean(values, axis=0), floor, None)
            low = np.clip(np.nanmin(values, axis=0), floor, None)
            high = np.clip(np.nanmax(values, axis=0), floor, None)
            x = np.arange(len(present)) + 0.25 * ((n + 0.5) / len(series) - 0.5)
            arm_text = arm_label(columns, key)
            label = f"{arm_text} · {regime}" if by_regime else arm_text
            # the mean of equal values can round past their min or max: clip the bars at zero length
            bars = np.clip([mean - low, high - mean], 0, None)
            ax.errorbar(x, mean, yerr=bars, color=colours[arm_text], marker=markers[regime], markersize=4,
                        linestyle=_linestyle(columns, key), linewidth=1.3, capsize=2, label=label)
            legend.setdefault(f"arm {arm_text}", Line2D([], [], color=colours[arm_text], linewidth=2,
                                                        linestyle=_linestyle(columns, key), label=arm_text))
            if by_regime:
                legend.setdefault(f"regime {regime}", Line2D([], [], color="0.25", marker=markers[regime],
                                                             linestyle="", label=f"trained: {regime}"))
        ax.set_yscale("log")
        ax.axhline(floor, color="0.5", linestyle=":", linewidth=0.8, zorder=0)
        ax.set_ylim(bottom=floor / 2)
        ax.set_xticks(range(len(present)), [c[len(LAYER_ERROR_PREFIX):] for c in present],
                      rotation=45 if len(present) > 4 else 0, ha="right" if len(present) > 4 else "center",
                      fontsize=8)
        name = " ".join(str(v) for v in panel[:-1]) + (" " if len(panel) > 1 else "")
        ax.set_title(f"{name}plain CNN (vs p4 quarter turns)" if _is_trivial(panel[-1]) else name + str(panel[-1]),
                     fontsize=10)
        ax.set_ylabel("relative equivariance error", fontsize=9)
        ax.grid(alpha=0.25, linewidth=0.6, which="major")
    ordered = [h for k, h in legend.items() if k.startswith("arm ")] + \
              [h for k, h in legend.items() if k.startswith("regime ")]
    fig.legend(handles=ordered, loc="outside lower center", ncols=min(len(ordered), 4), fontsize=9, frameon=False)
    return fig


# ---------------------------------------------------------------------------------------------------------------
# saving


def save_figure(fig: Figure, out_dir: str | Path, name: str, dpi: int = 150,
                formats: Sequence[str] = ("png", "svg")) -> list[Path]:
    """Write ``fig`` as ``out_dir/name.png`` (``dpi``) and ``out_dir/name.svg`` (no date stamp), creating
    ``out_dir``; returns the paths written."""
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise UserError(f"save_figure: name must be a plain file stem like 'accuracy_by_angle', got {name!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = out / f"{name}.{fmt}"
        metadata = {"Date": None} if fmt == "svg" else None
        fig.savefig(path, format=fmt, dpi=dpi, metadata=metadata)
        paths.append(path)
    return paths
