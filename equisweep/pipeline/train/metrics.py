"""Metric names shared by the LightningModule, the run, the Tune callback and the report."""

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
PARAMS = "params"
TRAIN_SECONDS = "train_seconds"
BEST_CHECKPOINT = "best_checkpoint"
BEST_EPOCH = "best_epoch"
EPOCH = "epoch"  # epochs completed: what a sweep trial reports after each validation, and ASHA's clock
ANGLE_PREFIX = f"{TEST_ACC_BY_ANGLE}/"  # flat keys of the per-angle and per-layer dicts (W&B summaries, columns)
LAYER_ERROR_PREFIX = f"{EQ_ERROR}/"
RELAXATION_PREFIX = "relaxation/"
PER_LAYER_PREFIXES = (LAYER_ERROR_PREFIX, RELAXATION_PREFIX)  # flat per-layer columns: metrics, never settings
