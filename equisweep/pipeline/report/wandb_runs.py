"""A sweep's runs read back from Weights & Biases as result tables, and the report's summary run.

``tables_from_runs`` rebuilds the two tables a local sweep writes (``equisweep.pipeline.sweep.results``) from the
runs' flat summaries (``equisweep.pipeline.train.tracking.flat_summary``), through the same row code.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from equisweep.errors import UserError
from equisweep.pipeline import vocabulary as m
from equisweep.pipeline.sweep.results import angle_rows, trial_row
from equisweep.pipeline.train.tracking import resolve_mode
from equisweep.pipeline.vocabulary import ANGLE_PREFIX, PER_LAYER_PREFIXES

_STATUS = {"finished": "finished", "running": "running", "failed": "failed", "crashed": "failed", "killed": "failed"}


def tables_from_runs(runs: Iterable[Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``results`` and ``angles`` tables from W&B runs (objects with ``id``, ``name``, ``state``, ``config`` and
    ``summary`` mappings, as ``wandb.Api().runs`` yields), row by row as a local sweep writes them."""
    rows, angles = [], []
    for run in runs:
        summary = dict(run.summary)
        result = {k: v for k, v in summary.items() if not k.startswith((ANGLE_PREFIX, *PER_LAYER_PREFIXES))}
        result[m.TEST_ACC_BY_ANGLE] = {k.removeprefix(ANGLE_PREFIX): v for k, v in summary.items()
                                       if k.startswith(ANGLE_PREFIX)}
        for key, prefix in m.PER_KEY_RESULTS.items():
            result[key] = {k.removeprefix(prefix): v for k, v in summary.items() if k.startswith(prefix)}
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


def report_run_id(name: str) -> str:
    """The summary run's id: one per sweep, so logging the report again replaces it instead of adding a run."""
    return f"{name}-report"


def log_report(out_dir: Path, name: str, figures: dict[str, Path], verdict: pd.DataFrame, project: str,
               entity: str | None, mode: str) -> Path | None:
    """Log the report's figures and verdict table as the sweep's one summary run (id ``report_run_id``, job type
    ``report``, in the sweep's group); returns the run's local directory, or None when W&B is disabled.

    Online, the run resumes under its id, so the figures and table it shows are the latest; offline, the previous
    local copies of the run are removed first, so one run (one id) is left to sync."""
    mode = resolve_mode(mode)
    if mode == "disabled":
        return None
    import wandb

    run_id = report_run_id(name)
    for previous in (out_dir / "wandb").glob(f"offline-run-*-{run_id}"):
        shutil.rmtree(previous)
    run = wandb.init(project=project, entity=entity, group=name, job_type="report", name=run_id, id=run_id,
                     resume="allow", dir=str(out_dir), mode=mode, reinit="finish_previous")
    try:
        run.log({key: wandb.Image(str(path)) for key, path in figures.items()}
                | {"verdict": wandb.Table(dataframe=verdict.astype(object).where(verdict.notna(), None))})
        return Path(run.dir).parent
    finally:
        run.finish()
