"""Sweeps on a real embedded Ray: results tables, W&B runs per trial, Optuna per cell, failures, resume."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from equisweep.pipeline.sweep.driver import run_sweep
from equisweep.pipeline.sweep.results import read_angles, read_results, status_text
from equisweep.pipeline.sweep.spec import load_sweep
from tests.helpers import read_wandb_run

pytestmark = pytest.mark.slow

# One epoch of 3,000 digits: about 15 s for a z2 trial and 25 s for a p4 trial on one CPU.
FAST = {"dataset": "mnist5k", "model": "p4cnn", "epochs": 1, "batch_size": 8, "lr": 3e-3, "dropout": 0.0,
        "angles": [0, 90, 45], "eq_error_samples": 8, "bn_calibration_batches": 2, "resources": {"cpu": 1}}


def _spec(tmp_path: Path, name: str, **settings) -> Path:
    path = tmp_path / f"{name}.yaml"
    spec = {"name": name, **FAST, "storage": str(tmp_path / "store"), "wandb": {"mode": "disabled"}, **settings}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _sweep_cli(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "equisweep", "sweep", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def test_four_trials_land_in_the_tables_and_in_wandb(tmp_path, ray_local):
    sweep = load_sweep(_spec(tmp_path, "four", wandb={"mode": "offline", "project": "equisweep-test"},
                             grid={"group": ["z2", "p4"], "input_size": [28, 29]}))
    outcome = run_sweep(sweep, verbose=0)

    assert outcome.counts == {"finished": 4}
    table = read_results(outcome.path)
    assert len(table) == 4 and table["trial_id"].is_unique
    assert list(zip(table["group"], table["input_size"], table["exact"])) == [
        ("z2", 28, True), ("z2", 29, False), ("p4", 28, True), ("p4", 29, False)]
    assert (table["epochs"] == 1).all() and (table["lr"] == 3e-3).all() and (table["dataset"] == "mnist5k").all()
    for column in ("val_acc", "test_acc_upright", "test_acc_orbit", "test_acc_mean_angles", "test_acc_min_angles"):
        assert table[column].between(0, 1).all(), column
    assert (table["test_acc_upright"] > 0.5).all()  # one epoch really trains
    p4 = table[table["group"] == "p4"].set_index("input_size")
    assert p4.loc[28, "eq_error"] < 1e-4 < p4.loc[29, "eq_error"]
    assert p4.loc[28, "eq_error/block7"] < 1e-4 < p4.loc[29, "eq_error/block2"]

    angles = read_angles(outcome.path)
    assert len(angles) == 4 * 3 and set(angles["angle"]) == {0.0, 45.0, 90.0}
    upright = angles[angles["angle"] == 0].set_index("trial_id")["accuracy"]
    assert upright.to_dict() == pytest.approx(table.set_index("trial_id")["test_acc_upright"].to_dict())
    exact_id = p4.loc[28, "trial_id"]
    exact_angles = angles[angles["trial_id"] == exact_id].set_index("angle")["accuracy"]
    assert exact_angles[90.0] == pytest.approx(exact_angles[0.0])  # an exact p4 net is invariant to quarter turns

    # one offline W&B run per trial, grouped by the sweep's name, with the trial's config and results
    runs = {}
    for run_file in Path(outcome.path).glob("*/wandb/offline-run-*/run-*.wandb"):
        runs[run_file.parts[-4]] = read_wandb_run(run_file)
    assert sorted(runs) == sorted(table["trial_name"])
    for row in table.itertuples():
        logged = runs[row.trial_name]
        assert (logged["project"], logged["group"]) == ("equisweep-test", "four")
        assert (logged["config"]["group"], logged["config"]["input_size"]) == (row.group, row.input_size)
        assert logged["summary"]["test_acc_upright"] == pytest.approx(row.test_acc_upright)
        assert {"val_acc", "train_loss"} <= logged["history_keys"]
    assert status_text(outcome.path).startswith("four: 4 trials, 4 finished, 0 running, 0 pending")


def test_optuna_searches_inside_each_cell(tmp_path, ray_local):
    sweep = load_sweep(_spec(tmp_path, "optuna", group="z2", grid={"input_size": [28, 29]},
                             search={"num_samples": 2, "space": {"lr": {"loguniform": [1e-3, 1e-2]}}}))
    outcome = run_sweep(sweep, verbose=0)

    table = read_results(outcome.path)
    assert outcome.counts == {"finished": 4}
    assert table.groupby("input_size").size().to_dict() == {28: 2, 29: 2}
    assert table["cell"].tolist() == [0, 0, 1, 1]
    assert table["lr"].between(1e-3, 1e-2).all() and table["lr"].nunique() == 4  # sampled, not the spec's lr
    assert table["val_acc"].notna().all()


def test_a_failing_trial_is_recorded_and_the_others_finish(tmp_path, ray_local):
    sweep = load_sweep(_spec(tmp_path, "fails", group="z2", max_failures=0,
                             variants=[{"optimizer": "sgd", "lr": 1.0e12}, {}]))
    outcome = run_sweep(sweep, verbose=0)

    table = read_results(outcome.path).set_index("optimizer")
    assert outcome.counts == {"finished": 1, "failed": 1}
    assert table.loc["sgd", "status"] == "failed" and table.loc["adam", "status"] == "finished"
    assert table.loc["sgd", "error"].startswith("FloatingPointError: training loss is ")
    assert pd_isna(table.loc["sgd", "test_acc_upright"]) and table.loc["adam", "test_acc_upright"] > 0.5
    assert "failed" in status_text(outcome.path).splitlines()[1]


def pd_isna(value) -> bool:
    return value is None or value != value


def test_killed_driver_resumes_without_rerunning_finished_trials(tmp_path):
    spec = _spec(tmp_path, "resume", group="z2", grid={"seed": [0, 1, 2, 3]}, max_concurrent=1)
    sweep_dir = tmp_path / "store" / "resume"
    driver = _sweep_cli(str(spec), "--num-cpus", "1", start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # wait until at least one trial is finished and recorded
        time.sleep(2)
        if (sweep_dir / "results.parquet").exists():
            table = read_results(str(sweep_dir))
            if (table["status"] == "finished").sum() >= 1:
                break
        assert driver.poll() is None, driver.stderr.read()
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and the Ray it started, without any clean-up
    driver.wait(timeout=60)
    before = read_results(str(sweep_dir)).set_index("trial_id")
    finished_before = before[before["status"] == "finished"]
    assert 1 <= len(finished_before) < 4

    again = _sweep_cli(str(spec))  # a sweep of this name exists: without --resume it refuses, before Ray starts
    assert again.wait(timeout=120) == 2 and "pass --resume" in again.stderr.read()

    resumed = _sweep_cli(str(spec), "--resume", "--num-cpus", "1")
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    assert out.startswith("resume: 4 trials, 4 finished")
    after = read_results(str(sweep_dir)).set_index("trial_id")
    assert len(after) == 4 and after.index.is_unique and (after["status"] == "finished").all()
    assert sorted(after["seed"]) == [0, 1, 2, 3]
    for trial_id, row in finished_before.iterrows():  # not trained again: the very same measurements
        assert after.loc[trial_id, "train_seconds"] == row["train_seconds"]
        assert after.loc[trial_id, "test_acc_upright"] == row["test_acc_upright"]
    assert len(read_angles(str(sweep_dir))) == 4 * 3
    status = subprocess.run([sys.executable, "-m", "equisweep", "sweep", "--status", str(sweep_dir)],
                            capture_output=True, text=True, timeout=60)
    assert status.returncode == 0 and status.stdout.startswith("resume: 4 trials, 4 finished, 0 running")


def test_dry_run_lists_the_paper_grid_with_exact_flags():
    result = subprocess.run([sys.executable, "-m", "equisweep", "sweep", "sweeps/paper_rotmnist.yaml", "--dry-run"],
                            capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[3])
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == "1600 trials" and len(lines) == 1600 + 1
    flags = {}
    for line in lines[:-1]:
        _, *settings = line.split()
        values = dict(setting.split("=") for setting in settings)
        flags.setdefault((values["group"], int(values["input_size"])), set()).add(values["exact"])
    assert flags == {("p4", 27): {"no"}, ("p4", 28): {"yes"}, ("p4", 29): {"no"}, ("z2", 28): {"yes"}}


@pytest.mark.parametrize(("args", "message"), [
    (["--address", "127.0.0.1:1"], "address: cannot reach a Ray cluster at '127.0.0.1:1'"),
    (["--address", "ray://127.0.0.1:1"], "address: cannot reach a Ray cluster at 'ray://127.0.0.1:1'"),
    (["--address", "nowhere"], "address: 'nowhere' is not auto, HOST:PORT or ray://HOST:PORT"),
    (["--wandb-mode", "loud"], "wandb.mode: Input should be"),
])
def test_bad_command_lines_exit_2_before_anything_starts(tmp_path, args, message):
    spec = _spec(tmp_path, "bad", group="z2")
    result = subprocess.run([sys.executable, "-m", "equisweep", "sweep", str(spec), *args], capture_output=True,
                            text=True, timeout=120)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("equisweep: error: ")
    assert message in lines[0] and result.stdout == ""
    assert not (tmp_path / "store").exists()


def test_asha_stops_hopeless_trials_on_the_epoch_clock(tmp_path, ray_local):
    # Sequential trials: the first sets the bar at epoch 1; near-zero learning rates fall below it and stop there.
    sweep = load_sweep(_spec(tmp_path, "asha", group="z2", epochs=2, max_concurrent=1,
                             scheduler={"grace_period": 1, "reduction_factor": 2},
                             variants=[{"lr": 3e-3}, {"lr": 1e-7}, {"lr": 1e-7, "seed": 1}]))
    outcome = run_sweep(sweep, verbose=0)

    table = read_results(outcome.path)
    assert table["status"].tolist() == ["finished", "stopped", "stopped"]
    assert table["epoch"].tolist() == [2, 1, 1]
    assert table["test_acc_upright"].notna().tolist() == [True, False, False]
    assert (table["wandb_group"] == "asha").all()
