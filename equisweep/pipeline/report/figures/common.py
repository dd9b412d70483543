"""What the figures share: metric names, markers, panel grids, row selection, and saving."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from equisweep.errors import UserError
from equisweep.pipeline import vocabulary as m
from equisweep.pipeline.report.arms import REGIME, format_value, missing
from equisweep.pipeline.report.verdict import REPORT_METRICS

ACCURACY_METRICS = tuple(REPORT_METRICS)
METRIC_LABELS = {**REPORT_METRICS, m.VAL_ACC: "validation"}
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def require(table: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing_columns = [c for c in columns if c not in table]
    if missing_columns:
        raise UserError(f"{what}: the table has no column {missing_columns[0]!r} "
                        f"(columns: {', '.join(map(str, table))})")


def _same(a: Any, b: Any) -> bool:
    if missing(a) or missing(b):
        return missing(a) and missing(b)
    return bool(a == b)


def select(table: pd.DataFrame, columns: Sequence[str], key: tuple) -> pd.DataFrame:
    """The rows of ``table`` whose ``columns`` hold ``key`` (missing values match missing values)."""
    mask = np.ones(len(table), dtype=bool)
    for column, value in zip(columns, key):
        mask &= np.array([_same(v, value) for v in table[column]], dtype=bool)
    return table[mask]


def row_label(conditions: Sequence[str], row: tuple) -> str:
    """``none, p4 29 approx, lr=0.01``: names as they are, numbers with their column, a reference as ``vs p4 28
    exact``."""
    parts = [f"vs {v}" if c == "exact_arm" else str(v) if c in (REGIME, "group", "arm") or isinstance(v, str)
             else f"{c}={format_value(v)}" for c, v in zip(conditions, row)]
    return ", ".join(parts) or "all"


def grid(n: int) -> tuple[int, int]:
    """Rows and columns for ``n`` panels: one row up to 3, then 2, 3 or 4 columns."""
    ncols = n if n <= 3 else 2 if n == 4 else 3 if n <= 6 or n == 9 else 4
    return math.ceil(n / ncols), ncols


def panels(fig: Figure, n: int, width: float, height: float, sharey: bool = True) -> list:
    """``n`` axes of ``width`` x ``height`` inches each on ``fig``, laid out by ``grid``."""
    nrows, ncols = grid(n)
    fig.set_size_inches(width * ncols + 0.6, height * nrows + 0.9)
    axes = fig.subplots(nrows, ncols, sharey=sharey, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.remove()
    for i, ax in enumerate(axes[:n]):
        if sharey and i % ncols:
            ax.tick_params(labelleft=True)  # shared limits, but every panel keeps its numbers
    return list(axes[:n])


def legend_below(fig: Figure, handles: list) -> None:
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4), fontsize=9, frameon=False)


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
