"""A trial retried where its working directory is gone (another node) finishes from its Tune checkpoint alone, with
its best epoch's metrics. Real Ray, Tune and Lightning: the node is lost by deleting the trial's working directory
and killing its process while it waits on its report."""

import os
import shutil
import signal

import pytest
import torch
import yaml
from ray import tune

from equisweep.pipeline import vocabulary as m
from equisweep.pipeline.sweep.driver import run_sweep
from equisweep.pipeline.sweep.results import read_results
from equisweep.pipeline.sweep.spec import load_sweep
from equisweep.pipeline.train.callbacks import MovableModelCheckpoint

# Three epochs of mnist69, of which only the first learns: after it the step schedule leaves an lr of 1e-14, so the
# later epochs tie with it and the first stays the best (ties keep the earlier). Two trials at once: seed 0 alone,
# seeds 1 and 2 packed.
SPEC = {"dataset": "mnist69", "model": "p4cnn", "group": "z2", "width": 8, "epochs": 3, "batch_size": 64, "lr": 1e-2,
        "dropout": 0.0, "schedule": "step", "step_size": 1, "gamma": 1e-12, "angles": [0], "eq_error_samples": 8,
        "bn_calibration_batches": 2, "resources": {"cpu": 1}, "max_failures": 1, "wandb": {"mode": "disabled"},
        "variants": [{"seed": 0, "eval_batch_size": 100}, {"seed": 1}, {"seed": 2}]}


class LoseTheNode(tune.Callback):
    """When a trial reports its second epoch (its Tune checkpoint saved, the trial waiting on the driver), its node
    is lost: the working directory goes, best checkpoint included, and its process is killed. Once per trial."""

    def __init__(self) -> None:
        self.first_epoch: dict[str, dict] = {}  # trial id -> its report of epoch 1

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if result[m.EPOCH] == 1:
            self.first_epoch.setdefault(trial.trial_id, result)
        elif result[m.EPOCH] == 2 and trial.num_failures == 0:
            shutil.rmtree(trial.storage.trial_working_directory)
            os.kill(result["pid"], signal.SIGKILL)


@pytest.mark.slow
def test_a_trial_retried_without_its_working_directory_finishes_with_its_best_epoch(tmp_path, ray_local):
    spec = tmp_path / "retry.yaml"
    spec.write_text(yaml.safe_dump({"name": "retry", "storage": str(tmp_path / "store"), **SPEC}))
    node_loss = LoseTheNode()
    outcome = run_sweep(load_sweep(spec), verbose=0, callbacks=[node_loss])

    table = read_results(outcome.path).set_index("seed")
    assert outcome.counts == {"finished": 3}, table[["status", "error"]]
    assert (table["attempts"] == 1).all()  # each trial lost its node once, and was retried
    first = {report["trial_id"]: report for report in node_loss.first_epoch.values()}
    alone, packed = table.loc[0], table.loc[[1, 2]]
    assert alone.best_epoch == 0 and alone.val_acc == pytest.approx(first[alone.trial_id]["val_acc"])
    pack_report = first[packed["trial_id"].iloc[0].rsplit("-seed", 1)[0]]
    assert packed["best_epoch"].tolist() == [0, 0]
    assert packed["val_acc"].tolist() == pytest.approx(pack_report["copy_val_acc"])
    assert (table["test_acc_upright"] > 0.8).all()  # the first epoch's weights, trained, were tested


def test_a_best_checkpoint_resumed_in_another_directory_keeps_its_score(tmp_path):
    # A resumed sweep's trials run under a new driver's directory: the best so far is put back there, under its name.
    first = MovableModelCheckpoint(dirpath=tmp_path / "node-a", filename="best", monitor=m.VAL_ACC, mode="max")
    first.best_model_score = torch.tensor(0.9)
    first.best_model_path = first.kth_best_model_path = str(tmp_path / "node-a" / "best.ckpt")
    first.best_k_models = {first.best_model_path: first.best_model_score}
    moved = MovableModelCheckpoint(dirpath=tmp_path / "node-b", filename="best", monitor=m.VAL_ACC, mode="max")
    moved.load_state_dict(first.state_dict())
    best = str(tmp_path / "node-b" / "best.ckpt")
    assert moved.best_model_score == pytest.approx(0.9) and moved.best_model_path == best
    assert moved.best_k_models == {best: pytest.approx(0.9)} and moved.kth_best_model_path == best
