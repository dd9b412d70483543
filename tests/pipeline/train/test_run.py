"""One training run end to end on the embedded real MNIST digits: protocol, reproducibility, files, W&B, CLI."""

import json
import math
import os
import subprocess
import sys

import pytest
import torch
import yaml

from equisweep.pipeline import load_run_config, run_one
from tests.helpers import read_wandb_run

pytestmark = pytest.mark.slow

# One epoch of 3,000 digits in batches of 8 (375 steps): the invariant p4cnn needs the steps more than the epochs.
FAST = {"epochs": 1, "batch_size": 8, "lr": 3e-3, "schedule": "none", "dropout": 0.0, "angles": [0, 45, 90, 180, 270],
        "eq_error_samples": 32, "wandb": {"mode": "disabled"}}


def _run(tmp_path_factory, name: str, **overrides) -> dict:
    out = tmp_path_factory.mktemp(name)
    return run_one(load_run_config({**FAST, **overrides}), out, enable_progress_bar=False) | {"_out": out}


@pytest.fixture(scope="module")
def exact_run(tmp_path_factory):
    return _run(tmp_path_factory, "exact", input_size=28, seed=0)


@pytest.fixture(scope="module")
def approx_run(tmp_path_factory):
    return _run(tmp_path_factory, "approx", input_size=29, seed=0)


@pytest.mark.trains
def test_exact_p4cnn_is_equally_accurate_at_every_quarter_turn(exact_run):
    by_angle = exact_run["test_acc_by_angle"]
    assert by_angle[0.0] == by_angle[90.0] == by_angle[180.0] == by_angle[270.0] == exact_run["test_acc_orbit"]
    assert by_angle[45.0] < by_angle[0.0]  # 45 degrees is no symmetry of the grid
    assert exact_run["exact"] and exact_run["eq_error"] < 1e-5


@pytest.mark.trains
def test_approximate_p4cnn_at_29_is_not(approx_run):
    by_angle = approx_run["test_acc_by_angle"]
    assert len({by_angle[a] for a in (0.0, 90.0, 180.0, 270.0)}) > 1
    assert not approx_run["exact"] and approx_run["eq_error"] > 1e-3


@pytest.mark.trains
def test_one_epoch_is_clearly_better_than_chance(exact_run, approx_run):
    # Chance is 0.1. Over seeds and SIMD kernel paths one epoch gives 0.80 to 0.85 (`make test-isa`).
    assert exact_run["test_acc_upright"] > 0.7 and approx_run["test_acc_upright"] > 0.7


def test_run_directory_holds_metrics_config_and_a_weights_only_checkpoint(exact_run):
    out = exact_run["_out"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_acc_by_angle"]["90.0"] == exact_run["test_acc_by_angle"][90.0]
    assert all(0 <= metrics[k] <= 1 for k in ("val_acc", "test_acc_upright", "test_acc_orbit",
                                              "test_acc_mean_angles", "test_acc_min_angles"))
    assert metrics["params"] == 24_810 and metrics["train_seconds"] > 0
    assert 0 < metrics["lee"] < math.inf  # the exact p4 net is still not invariant to small rotations
    assert metrics["best_checkpoint"] == "checkpoints/best.ckpt" and metrics["best_epoch"] == 0
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["input_size"] == 28 and config["resize_method"] == "resize" and config["seed"] == 0
    state = torch.load(out / "checkpoints" / "best.ckpt", weights_only=True)
    assert "state_dict" in state
    files = {str(path.relative_to(out)) for path in out.rglob("*") if path.is_file()}
    assert files == {"metrics.json", "config.yaml", "checkpoints/best.ckpt"}  # no temporaries, no trainer logs


def test_same_seed_same_metrics_different_seed_different(exact_run, tmp_path_factory):
    again = _run(tmp_path_factory, "again", input_size=28, seed=0)
    other = _run(tmp_path_factory, "other", input_size=28, seed=1)
    keys = ["val_acc", "test_acc_upright", "test_acc_by_angle", "eq_error"]
    assert [again[k] for k in keys] == [exact_run[k] for k in keys]
    assert [other[k] for k in keys] != [exact_run[k] for k in keys]


def _cli(*args: str, cwd, env=None) -> subprocess.CompletedProcess:
    """Run ``equisweep train``; ``env`` entries set to None are removed from the environment."""
    environ = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "equisweep", "train", *args], capture_output=True, text=True,
                          cwd=cwd, env={k: v for k, v in environ.items() if v is not None}, timeout=600)


def test_cli_train_logs_to_wandb_offline_and_matches_the_library(exact_run, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({**FAST, "wandb": {"mode": "offline", "project": "equisweep-test"}}))
    result = _cli("--config", str(config), "--input-size", "28", "--seed", "0", "--out", "run",  # relative to cwd
                  cwd=tmp_path, env={"WANDB_MODE": None, "WANDB_DIR": str(tmp_path / "wandb-dir")})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "litlogger" not in result.stderr and "anonymous" not in result.stderr  # library notices are silenced
    printed = json.loads(result.stdout)  # stdout holds only the result
    assert printed["test_acc_upright"] == exact_run["test_acc_upright"]
    runs = list((tmp_path / "wandb-dir" / "wandb").glob("offline-run-*/run-*.wandb"))  # the user's WANDB_DIR
    assert len(runs) == 1 and not (tmp_path / "run" / "wandb").exists()
    logged = read_wandb_run(runs[0])
    assert logged["project"] == "equisweep-test" and logged["config"]["input_size"] == 28
    assert logged["job_type"] == "p4 28 exact" and {"p4 28 exact", "p4", "size-28", "exact"} <= set(logged["tags"])
    assert logged["summary"]["test_acc_upright"] == pytest.approx(exact_run["test_acc_upright"])
    assert logged["summary"]["lee"] == pytest.approx(exact_run["lee"])
    assert {"train_loss", "val_acc", "test_acc_by_angle_table/_type"} <= logged["history_keys"]
    table = json.loads(next(runs[0].parent.glob("files/media/table/test_acc_by_angle_table_*.json")).read_text())
    assert table["columns"] == ["angle", "accuracy"]
    assert {angle: acc for angle, acc in table["data"]} == pytest.approx(exact_run["test_acc_by_angle"])


@pytest.mark.trains
def test_cli_train_defaults_give_a_well_trained_exact_p4cnn(tmp_path):
    """Only a dataset and a model: the defaults must train the exact (invariant) p4 net well on the embedded
    digits; it needs a few hundred steps where the plain CNN needs one epoch. (The file only cuts the test angles,
    to save time: it changes nothing in training.)"""
    config = tmp_path / "angles.yaml"
    config.write_text("angles: [0, 90]\n")
    result = _cli("--config", str(config), "--dataset", "mnist5k", "--model", "p4cnn", "--out", "run",
                  "--wandb-mode", "disabled", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    printed = json.loads(result.stdout)
    assert printed["exact"] and printed["test_acc_upright"] >= 0.9


@pytest.mark.parametrize(("args", "field"), [
    (["--dataset", "imagenet"], "dataset"),
    (["--train-symmetry", "gaussian(45)"], "train_symmetry"),
    (["--model", "resnet45"], "model"),
    (["--group", "p5"], "group"),
    (["--input-size", "6"], "input_size"),
    (["--lr", "-0.1"], "lr"),
    (["--group", "c8"], "group"),
    (["--group", "z2", "--relaxation", "relaxed"], "relaxation"),
    (["--group", "c4", "--backend", "e2cnn", "--relaxation", "rpp"], "relaxation"),
    (["--relaxation", "soft"], "relaxation"),
    (["--relaxation", "{method: rpp, free: 1e-4}"], "relaxation.free"),  # options as a YAML mapping
])
def test_bad_settings_exit_2_in_one_line_before_training(args, field, tmp_path):
    result = _cli(*args, "--out", str(tmp_path / "run"), "--wandb-mode", "disabled", cwd=tmp_path)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"equisweep: error: {field}:"), \
        result.stderr[-2000:]
    assert not (tmp_path / "run").exists() and result.stdout == ""


def test_unknown_key_in_the_config_file_exits_2(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("epochs: 1\nlearning_rate: 0.1\n")
    result = _cli("--config", str(config), "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert result.returncode == 2
    message = result.stderr.strip()
    assert message.startswith("equisweep: error: learning_rate: unknown key; remove it, or use one of: dataset, ")
    assert ", lr, " in message and "\n" not in message
