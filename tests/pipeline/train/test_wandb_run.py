"""A run's W&B identity and place: one stable id per (sweep, trial), the arm as job type and tags, WANDB_DIR obeyed."""

import json
import os
import subprocess
import sys

import pytest
import yaml

from equisweep.pipeline import load_run_config, run_one
from equisweep.pipeline.train.tracking import wandb_run_id
from tests.helpers import read_wandb_run

pytestmark = pytest.mark.slow

# A plain CNN (z2) trains one epoch in seconds; the W&B side is what these tests look at.
TRIAL = {"group": "z2", "epochs": 1, "batch_size": 64, "angles": [0, 90], "eq_error_samples": 8,
         "run_name": "trial_1", "wandb": {"mode": "offline", "project": "equisweep-test", "group": "sweep-a"}}


def test_a_retried_trial_continues_its_wandb_run_and_wandb_dir_is_obeyed(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_DIR", raising=False)
    first = run_one(load_run_config(TRIAL), tmp_path / "first", enable_progress_bar=False)
    (first_file,) = (tmp_path / "first" / "wandb").glob("offline-run-*/run-*.wandb")  # no WANDB_DIR: next to the run

    # The same trial, run again in a fresh process as a retried trial runs on a Ray worker; with a WANDB_DIR.
    wandb_dir, config = tmp_path / "wandb-dir", tmp_path / "trial.yaml"
    config.write_text(yaml.safe_dump(TRIAL))
    retry = subprocess.run([sys.executable, "-m", "equisweep", "train", "--config", str(config), "--out",
                            str(tmp_path / "retry")], env={**os.environ, "WANDB_DIR": str(wandb_dir)},
                           capture_output=True, text=True, timeout=300)
    assert retry.returncode == 0, retry.stderr[-2000:]
    (retry_file,) = (wandb_dir / "wandb").glob("offline-run-*/run-*.wandb")
    assert not (tmp_path / "retry" / "wandb").exists()

    logged, again = read_wandb_run(first_file), read_wandb_run(retry_file)
    assert logged["id"] == again["id"] and first_file.name == retry_file.name == f"run-{logged['id']}.wandb"
    assert (again["job_type"], again["group"]) == ("plain CNN 28", "sweep-a")
    assert {"plain CNN 28", "z2", "size-28", "plain"} <= set(again["tags"])
    # a trivial group is neither exact nor approximate: not applicable, everywhere the run records it
    assert first["exact"] is None and again["summary"]["exact"] is None
    assert json.loads((tmp_path / "retry" / "metrics.json").read_text())["exact"] is None

    other_trial = load_run_config({**TRIAL, "run_name": "trial_2"})
    assert wandb_run_id(other_trial, tmp_path / "retry") != logged["id"]  # another trial of the sweep, another run
