"""Weights & Biases: which mode a run logs in, a sweep's runs read back as result tables, and the report's
summary run. Imports nothing used for training, so the report can use it.

A run's summary holds its scalar results plus flat ``test_acc_by_angle/<angle>`` and ``eq_error/<layer>`` keys,
so ``tables_from_runs`` rebuilds the two tables a local sweep writes (``results.py``), through the same row code.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from equisweep.errors import UserError
from equisweep.pipeline import metrics as m
from equisweep.pipeline.results import LAYER_ERROR_PREFIX, angle_rows, trial_row

ANGLE_PREFIX = f"{m.TEST_ACC_BY_ANGLE}/"
_STATUS = {"finished": "finished", "running": "running", "failed": "failed", "crashed": "failed", "killed": "failed"}


def resolve_mode(mode: str) -> str:
    """``auto`` is online when an API key is set and offline otherwise; other modes stand as given."""
    if mode != "auto":
        return mode
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


def flat_summary(results: dict[str, Any]) -> dict[str, Any]:
    """A run's results as W&B summary keys: scalars as they are, per-angle and per-layer dicts flattened."""
    summary = {key: value for key, value in results.items() if not isinstance(value, dict)}
    summary.update({f"{ANGLE_PREFIX}{float(a)}": acc for a, acc in results[m.TEST_ACC_BY_ANGLE].items()})
    summary.update({f"{LAYER_ERROR_PREFIX}{layer}": v for layer, v in results[m.EQ_ERROR_BY_LAYER].items()})
    return summary


def tables_from_runs(runs: Iterable[Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``results`` and ``angles`` tables from W&B runs (objects with ``id``, ``name``, ``state``, ``config`` and
    ``summary`` mappings, as ``wandb.Api().runs`` yields), row by row as a local sweep writes them."""
    rows, angles = [], []
    for run in runs:
        summary = dict(run.summary)
        result = {k: v for k, v in summary.items() if not k.startswith((ANGLE_PREFIX, LAYER_ERROR_PREFIX))}
        result[m.TEST_ACC_BY_ANGLE] = {k.removeprefix(ANGLE_PREFIX): v for k, v in summary.items()
                                       if k.startswith(ANGLE_PREFIX)}
        result[m.EQ_ERROR_BY_LAYER] = {k.removeprefix(LAYER_ERROR_PREFIX): v for k, v in summary.items()
                                       if k.startswith(LAYER_ERROR_PREFIX)}
        status = _STATUS.get(run.state, "pending")
        error = f"the W&B run {run.state}; see its logs" if status == "failed" else None
        rows.append(trial_row(run.id, run.name, None, dict(run.config), result.get(m.EXACT), status, error, 0, result))
        angles.extend(angle_rows(run.id, result) if status == "finished" else [])
    if not rows:
        raise UserError("source: no W&B runs in that group; check --wandb-project, --wandb-entity and the sweep name")
    return pd.DataFrame(rows), pd.DataFrame(angles, columns=["trial_id", "angle", "accuracy"])


def fetch_tables(project: str, group: str, entity: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A sweep's tables pulled from the W&B API: every run of ``project`` in ``group`` (the sweep's name)."""
    import wandb

    if not os.environ.get("WANDB_API_KEY"):
        raise UserError("source: --source wandb needs WANDB_API_KEY; without it, report from the local Parquet files")
    path = f"{entity}/{project}" if entity else project
    return tables_from_runs(wandb.Api().runs(path, filters={"group": group}))


def log_report(out_dir: Path, name: str, figures: dict[str, Path], verdict: pd.DataFrame, project: str,
               entity: str | None, mode: str) -> Path | None:
    """Log the report's figures and verdict table as one summary run of the sweep (job type ``report``, in the
    sweep's group); returns the run's local directory, or None when W&B is disabled."""
    mode = resolve_mode(mode)
    if mode == "disabled":
        return None
    import wandb

    run = wandb.init(project=project, entity=entity, group=name, job_type="report", name=f"{name}-report",
                     dir=str(out_dir), mode=mode, reinit="finish_previous")
    try:
        run.log({key: wandb.Image(str(path)) for key, path in figures.items()}
                | {"verdict": wandb.Table(dataframe=verdict.astype(object).where(verdict.notna(), None))})
        return Path(run.dir).parent
    finally:
        run.finish()
