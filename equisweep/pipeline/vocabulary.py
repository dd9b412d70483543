"""The words training, sweeps and the report share: metric names and the names of arms.

Below ``train/``, ``sweep/`` and ``report/`` alike and free of torch, so the report and ``equisweep sweep --status``
name metrics and arms as the runs do without importing any training code.

An arm is what a run *is*, named the same way in W&B, tables and figures: (model, group, relaxation, subsampling,
input size, invariance wrapper, equivariance penalty) with its static verdict: ``p4 28 exact``, ``p4 29 approx``,
``p4 29 adaptive exact``, ``p4 28 rpp``, ``p4 29 approx average``, ``plain CNN 28 eq_penalty=0.1``; a trivial group
is neither exact nor approximate, so a z2 net is the ``plain CNN 28`` (its ``exact`` is None: not applicable). The
defaults (relaxation ``none``, subsampling ``stride``, no wrapper, no penalty) are left out of the name, so the names
of the original arms never change. The report's arms (``equisweep.pipeline.report.arms``) are labelled by ``arm_label``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

# metrics: what the LightningModule logs, a run returns, a sweep trial reports and the report reads
VAL_ACC = "val_acc"
TRAIN_LOSS = "train_loss"
TRAIN_ACC = "train_acc"
TEST_ACC_UPRIGHT = "test_acc_upright"
TEST_ACC_ORBIT = "test_acc_orbit"
TEST_ACC_BY_ANGLE = "test_acc_by_angle"
TEST_ACC_MEAN_ANGLES = "test_acc_mean_angles"
TEST_ACC_MIN_ANGLES = "test_acc_min_angles"
EXACT = "exact"
EQ_ERROR = "eq_error"
EQ_ERROR_BY_LAYER = "eq_error_by_layer"
LEE = "lee"  # mean |Lie derivative| of the softmax output under rotation, on the equivariance error's sample
RELAXATION_BY_LAYER = "relaxation_by_layer"  # relaxed runs only: how far each relaxed layer moved from exact
RELAXATION_PENALTY = "relaxation_penalty"  # the relaxed layers' term of the training loss
INVARIANCE_LOSS = "invariance_loss"  # an invariance wrapper's term of the training loss
EQ_PENALTY_TERM = "eq_penalty_term"  # the soft-equivariance penalty before λ
FAMILY_DIAGNOSTICS = "family_diagnostics"  # what an invariance wrapper or a penalty reports of itself
PARAMS = "params"
TRAIN_SECONDS = "train_seconds"
BEST_CHECKPOINT = "best_checkpoint"
BEST_EPOCH = "best_epoch"
EPOCH = "epoch"  # epochs completed: what a sweep trial reports after each validation, and ASHA's clock
ANGLE_PREFIX = f"{TEST_ACC_BY_ANGLE}/"  # flat keys of the per-angle and per-layer dicts (W&B summaries, columns)
LAYER_ERROR_PREFIX = f"{EQ_ERROR}/"
RELAXATION_PREFIX = "relaxation/"
FAMILY_PREFIX = "family/"
# a result's dicts, each flattened into one column (W&B summary key) per entry under its prefix: metrics, never settings
PER_KEY_RESULTS = {EQ_ERROR_BY_LAYER: LAYER_ERROR_PREFIX, RELAXATION_BY_LAYER: RELAXATION_PREFIX,
                   FAMILY_DIAGNOSTICS: FAMILY_PREFIX}
PER_LAYER_PREFIXES = tuple(PER_KEY_RESULTS.values())

# arms
TRIVIAL_GROUPS = frozenset({"z2", "c1"})  # the native and the e2cnn spelling of the trivial group
NO_RELAXATION, STRIDE = "none", "stride"  # the defaults, which an arm's name leaves out
NO_INVARIANCE, NO_PENALTY, ORBIT = "none", 0.0, "orbit"  # the families' defaults: no wrapper, no penalty, its kind
# the settings of a network before any wrapper: rows that share them share the backbone's static verdict
BACKBONE_SETTINGS = ("model", "group", "backend", "width", "head", "input_size", "relaxation", "subsampling")


def is_trivial(group: object) -> bool:
    return str(group) in TRIVIAL_GROUPS


def arm_label(group: str, input_size: int, exact: bool | None, relaxation: str = NO_RELAXATION,
              subsampling: str = STRIDE, invariance: str = NO_INVARIANCE, eq_penalty: float = NO_PENALTY,
              eq_penalty_kind: str = ORBIT, options: Mapping[str, Any] | None = None) -> str:
    """``p4 28 exact``, ``p4 29 approx``, ``p4 29 adaptive exact``, ``p4 28 rpp``, ``plain CNN 28``, and with a
    family: ``plain CNN 29 average``, ``p4 29 approx average``, ``plain CNN 28 eq_penalty=0.1``, ``... lie``.

    ``exact`` is the static verdict of the network before any invariance wrapper (its backbone: a wrapper's own
    verdict says nothing of it; None where it is not known, and no word). A relaxed arm is named by its relaxation
    instead of exact/approx: its static verdict holds only while its relaxed parameters are tied, which training
    undoes. The penalty's kind is named where it is not the default (orbit). ``options``: a method's options that
    tell arms apart (``{"relaxation_free_wd": 1.0}``, see ``method_options``) follow as ``free_wd=1``; a missing one
    (a method without it) is left out."""
    trivial = is_trivial(group)
    words = ["plain CNN" if trivial else str(group), str(input_size)]
    if subsampling != STRIDE:
        words.append(str(subsampling))
    if relaxation != NO_RELAXATION:
        words.append(str(relaxation))
    elif not trivial and exact is not None:
        words.append("exact" if exact else "approx")
    if invariance != NO_INVARIANCE:
        words.append(str(invariance))
    if eq_penalty:
        words.append(f"eq_penalty={eq_penalty:g}" + ("" if eq_penalty_kind == ORBIT else f" {eq_penalty_kind}"))
    for column, value in (options or {}).items():
        value = _plain(value)
        if value is not None:
            words.append(f"{column.partition('_')[2]}={value:g}" if isinstance(value, float) else
                         f"{column.partition('_')[2]}={value}")
    return " ".join(words)


def method_options(rows: Sequence[Mapping[str, Any]], method_settings: Sequence[str]) -> list[str]:
    """The option columns (``<setting>_<option>`` of each method setting, ``relaxation_free_wd``) that tell arms
    apart in ``rows``: those whose value varies among the rows of one method. An option a method has at one value
    throughout, or one that only other methods lack, names nothing."""
    found = []
    for setting in method_settings:
        columns = dict.fromkeys(c for row in rows for c in row if c.startswith(f"{setting}_"))
        for column in columns:
            values: dict[Any, set] = {}
            for row in rows:
                values.setdefault(_plain(row.get(setting)), set()).add(_plain(row.get(column)))
            if any(len(seen) > 1 for seen in values.values()):
                found.append(column)
    return found


def backbone_verdicts(rows: Sequence[Mapping[str, Any]]) -> list[bool | None]:
    """The static verdict of each row's network before its invariance wrapper, the word its arm's label shows: the
    row's own ``exact`` where it has no wrapper; behind one (whose own verdict is the wrapper's), the verdict of the
    unwrapped rows of the same table with the same ``BACKBONE_SETTINGS`` where they agree, else None (not known)."""
    def key(row: Mapping[str, Any]) -> tuple:
        return tuple(_plain(row.get(setting)) for setting in BACKBONE_SETTINGS)

    def wrapped(row: Mapping[str, Any]) -> bool:
        return _plain(row.get("invariance")) not in (None, NO_INVARIANCE)

    seen: dict[tuple, set] = {}
    for row in rows:
        if not wrapped(row):
            seen.setdefault(key(row), set()).add(_flag(row.get(EXACT)))
    own = [_flag(row.get(EXACT)) if not wrapped(row) else seen.get(key(row), {None}) for row in rows]
    return [flag if not isinstance(flag, set) else next(iter(flag)) if len(flag) == 1 else None for flag in own]


def _plain(value: Any) -> Any:
    """A cell as a comparable value: None for missing (NaN), a number for a numpy one."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def _flag(value: Any) -> bool | None:
    value = _plain(value)
    return None if value is None else bool(value)
