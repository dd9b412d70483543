"""The columns of ``results.parquet``, declared once, as plain data (the report reads them and imports no torch):

- ``IDENTITY``: which trial a row is, its state and its cost,
- ``SETTINGS``: one per leaf of the run config (``RunConfig``), under the leaf's own name; a W&B setting, whose
  name (``project``, ``group``, ...) says nothing alone, as ``wandb_<name>``. A test derives the leaves from the
  config, so a new setting cannot be left out of this list, nor a removed one kept,
- ``EXACT``: the static check's verdict on the settings,
- ``METRICS``: the scalar metrics, plus one column per layer for the per-layer ones (``PER_LAYER_PREFIXES``).

The report selects its columns from these lists, never by leaving others out. What does not fit is a mistake in the
code, not in the user's sweep: a row with an undeclared column, or a run's final result with a key that no column or
table takes or without a declared metric. Tests (``STRICT`` set in the environment) raise it; a user's sweep warns
and goes on, so that a finished sweep's tables are written all the same, and a table from an older version that
lacks a newer metric still reads.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from typing import Any

from equisweep.pipeline import vocabulary as m

STRICT = "EQUISWEEP_STRICT_COLUMNS"  # set (non-empty): a mismatch with the declaration raises instead of warning

IDENTITY = ("trial_id", "trial_name", "cell", "status", "error", "attempts", "trial_seconds", "started_at")
SETTINGS = (
    "dataset", "data_dir", "download", "input_size", "resize_method", "train_symmetry", "per_batch", "batch_size",
    "eval_batch_size", "num_workers",
    "model", "group", "backend", "width", "head", "dropout", "relaxation", "subsampling", "invariance",
    "epochs", "optimizer", "lr", "weight_decay", "momentum", "schedule", "step_size", "gamma", "eq_penalty",
    "eq_penalty_kind", "seed",
    "angles", "eq_error_samples", "bn_calibration_batches",
    "accelerator", "precision", "channels_last", "deterministic",
    "wandb_project", "wandb_entity", "wandb_group", "wandb_mode", "wandb_tags", "run_name",
)
NAMING_SETTINGS = ("data_dir", "run_name")  # where a run's data lives and what it is called: never what a run *is*
PREFIXED_SETTINGS = ("wandb",)  # nested settings whose columns carry their parent's name: ``wandb_project``
# settings that name a method with its options, ``{method: rpp, free_wd: 1.0}``: the method in the setting's column,
# each option (whichever the method has) as ``relaxation_free_wd``
METHOD_SETTINGS = ("relaxation", "invariance")
EXACT = m.EXACT
# every finished run reports these ...
FINAL_METRICS = (m.VAL_ACC, m.TEST_ACC_UPRIGHT, m.TEST_ACC_ORBIT, m.TEST_ACC_MEAN_ANGLES, m.TEST_ACC_MIN_ANGLES,
                 m.EQ_ERROR, m.LEE, m.PARAMS, m.TRAIN_SECONDS, m.BEST_EPOCH, m.EPOCH)
METRICS = (*FINAL_METRICS, m.TRAIN_LOSS)  # ... and a running trial its training loss after each epoch but the last
PER_LAYER_PREFIXES = m.PER_LAYER_PREFIXES  # eq_error/<layer>, relaxation/<layer>, family/<diagnostic>
# what else a run's final result holds, kept elsewhere: ``exact`` in its own column, the checkpoint's path in the
# finished record only, the angles in ``angles.parquet``, the per-layer dicts as per-layer columns
RESULT_ELSEWHERE = (m.EXACT, m.BEST_CHECKPOINT, m.TEST_ACC_BY_ANGLE, *m.PER_KEY_RESULTS)
COLUMNS = (*IDENTITY, *SETTINGS, EXACT, *METRICS)


def is_declared(column: str) -> bool:
    return column in _DECLARED or column.startswith(PER_LAYER_PREFIXES) or column.startswith(_OPTION_PREFIXES)


def flat_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Run settings as columns, in their order: each leaf under its own name, however the settings are nested (a
    group of settings, ``{"optim": {"lr": 0.1}}``, gives ``lr``), a W&B one as ``wandb_<name>``, a method setting as
    its method and ``<setting>_<option>``."""
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        if key in PREFIXED_SETTINGS and isinstance(value, Mapping):
            flat.update({f"{key}_{sub}": leaf for sub, leaf in value.items()})
        elif key in METHOD_SETTINGS and isinstance(value, Mapping):
            flat[key] = value["method"]
            flat.update({f"{key}_{option}": leaf for option, leaf in value.items() if option != "method"})
        elif isinstance(value, Mapping):
            flat.update(flat_settings(value))
        else:
            flat[key] = value
    return flat


def declared_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``flat_settings`` less any undeclared column, each one a ``mismatch``."""
    flat = flat_settings(settings)
    undeclared = [key for key in flat if not is_declared(key)]
    if undeclared:
        mismatch(f"results table: undeclared setting column(s) {', '.join(map(repr, undeclared))}; declare each in "
                 f"{__name__}.SETTINGS (a run config leaf) or leave it out of the row")
    return {key: value for key, value in flat.items() if key not in undeclared}


def check_final_result(result: Mapping[str, Any]) -> None:
    """A finished run's final result against the declaration: every key has a column or a table, and every
    ``FINAL_METRICS`` is there; each difference is a ``mismatch``."""
    undeclared = [key for key in result if key not in FINAL_METRICS and key not in RESULT_ELSEWHERE]
    missing = [key for key in FINAL_METRICS if key not in result]
    if undeclared:
        mismatch(f"results table: the run reported {', '.join(map(repr, undeclared))}, which no column takes; "
                 f"declare each in {__name__}.METRICS (or RESULT_ELSEWHERE)")
    if missing:
        mismatch(f"results table: the run did not report the declared metric(s) {', '.join(map(repr, missing))}; "
                 f"report each, or take it out of {__name__}.FINAL_METRICS")


def mismatch(problem: str) -> None:
    """Code and declaration disagree: raise under ``STRICT`` (tests), else warn (a user's sweep goes on)."""
    if os.environ.get(STRICT):
        raise ValueError(problem)
    warnings.warn(problem, stacklevel=3)


_DECLARED = frozenset(COLUMNS)
_OPTION_PREFIXES = tuple(f"{setting}_" for setting in METHOD_SETTINGS)
