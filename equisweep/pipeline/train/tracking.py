"""Weights & Biases for one run: which mode it logs in, and its results as flat summary keys.

A run's summary holds its scalar results plus flat ``test_acc_by_angle/<angle>``, ``eq_error/<layer>`` and (relaxed
runs) ``relaxation/<layer>`` keys, so the report can rebuild a sweep's tables from its runs
(``equisweep.pipeline.report.wandb_runs``).
"""

from __future__ import annotations

import os
from typing import Any

from equisweep.pipeline.train import metrics as m
from equisweep.pipeline.train.metrics import ANGLE_PREFIX, LAYER_ERROR_PREFIX, RELAXATION_PREFIX


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
    summary.update({f"{RELAXATION_PREFIX}{layer}": v for layer, v in results.get(m.RELAXATION_BY_LAYER, {}).items()})
    return summary


