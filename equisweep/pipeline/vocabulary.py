"""The words training, sweeps and the report share: metric names and the names of arms.

Below ``train/``, ``sweep/`` and ``report/`` alike and free of torch, so the report and ``equisweep sweep --status``
name metrics and arms as the runs do without importing any training code.

An arm is what a run *is*, named the same way in W&B, tables and figures: (model, group, relaxation, subsampling,
input size) with its static verdict: ``p4 28 exact``, ``p4 29 approx``, ``p4 29 adaptive exact``, ``p4 28 rpp``; a
trivial group is neither exact nor approximate, so a z2 net is the ``plain CNN 28`` (its ``exact`` is None: not
applicable). The defaults (relaxation ``none``, subsampling ``stride``) are left out of the name, so the names of the
original arms never change. The report's arms (``equisweep.pipeline.report.arms``) are labelled by ``arm_label``.
"""

from __future__ import annotations

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


def is_trivial(group: object) -> bool:
    return str(group) in TRIVIAL_GROUPS


def arm_label(group: str, input_size: int, exact: bool | None, relaxation: str = NO_RELAXATION,
              subsampling: str = STRIDE) -> str:
    """``p4 28 exact``, ``p4 29 approx``, ``p4 29 adaptive exact``, ``p4 28 rpp`` or ``plain CNN 28``.

    A relaxed arm is named by its relaxation instead of exact/approx: its static verdict holds only while its relaxed
    parameters are tied, which training undoes."""
    trivial = is_trivial(group)
    words = ["plain CNN" if trivial else str(group), str(input_size)]
    if subsampling != STRIDE:
        words.append(str(subsampling))
    if relaxation != NO_RELAXATION:
        words.append(str(relaxation))
    elif not trivial and exact is not None:
        words.append("exact" if exact else "approx")
    return " ".join(words)
