"""The gap map: each arm's accuracy minus its exact reference's, per condition and arm (rows) and metric (columns)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.colors import Normalize, to_rgba
from matplotlib.figure import Figure

from equisweep.errors import UserError
from equisweep.pipeline.report.figures.common import METRIC_LABELS, require, row_label

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
    -> colour, see ``arms.colours``) colours each row's label as its arm.
    """
    require(table, ["metric", "diff"], "gap_map")
    if conditions is None:
        conditions = list(table.columns[:list(table.columns).index("metric")])
    conditions = list(conditions)
    require(table, conditions, "gap_map")
    if "verdict" in table:
        table = table[table["verdict"] != "reference"]
    if table.empty:
        raise UserError("gap_map: the verdict table is empty")
    keys = [*conditions, "arm"] if "arm" in table and "arm" not in conditions else conditions
    if "exact_arm" in table and "arm" in keys and table.duplicated([*keys, "metric"]).any():
        keys = [*keys, "exact_arm"]  # an arm against two references (same size, the paper's pair): a row each
    if table.duplicated([*keys, "metric"]).any():
        raise UserError(f"gap_map: several rows per ({', '.join([*keys, 'metric'])}); pass every condition "
                        "column that tells them apart as conditions=[...]")
    if metrics is None:
        seen = list(dict.fromkeys(table["metric"]))
        metrics = sorted(seen, key=lambda label: (_metric_rank(label), seen.index(label)))
    metrics = list(metrics)
    rows = list(dict.fromkeys(tuple(r) for r in table[keys].itertuples(index=False))) if keys else [()]
    values, intervals, marks = _cells(table, keys, rows, metrics, alpha)
    fig = Figure(layout="constrained", figsize=(2.8 + 1.45 * len(metrics), 1.3 + 0.62 * len(rows)))
    ax = fig.add_subplot()
    _heatmap(fig, ax, values, intervals, marks, [row_label(keys, r) for r in rows],
             [METRIC_LABELS.get(str(label), str(label)) for label in metrics])
    if colours and "arm" in keys:
        for tick, row in zip(ax.get_yticklabels(), rows):
            tick.set_color(colours.get(str(row[keys.index("arm")]), "black"))
    ax.set_ylabel(" × ".join(keys), fontsize=9)
    ax.set_title(title or f"arm − exact reference (accuracy points); * p_adjusted < {alpha:g}, others muted",
                 fontsize=10)
    return fig


def _cells(table: pd.DataFrame, keys: list[str], rows: list[tuple], metrics: list[str],
           alpha: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row and metric: the difference and its interval in points, and whether it is significant."""
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
    return values, intervals, marks


def _metric_rank(label: str) -> int:
    text = str(label).lower()
    for rank, word in enumerate(("upright", "orbit", "mean", "min")):
        if word in text:
            return rank
    return 4
