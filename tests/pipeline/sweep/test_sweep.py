"""Sweeps on a real embedded Ray: results tables, W&B runs per trial, Optuna per cell, failures, resume."""

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from ray import tune

from equisweep.cli import main
from equisweep.pipeline.sweep.driver import run_sweep
from equisweep.pipeline.sweep.heartbeat import BEAT_EVERY_S, read_driver
from equisweep.pipeline.sweep.results import read_angles, read_results
from equisweep.pipeline.sweep.spec import load_sweep
from equisweep.pipeline.sweep.status import status_text, watch_status
from equisweep.pipeline.vocabulary import arm_label
from tests.helpers import read_wandb_run

pytestmark = pytest.mark.slow

# One epoch of mnist69's 600 training digits (6s against 9s): a few seconds of training per trial on one CPU.
FAST = {"dataset": "mnist69", "model": "p4cnn", "epochs": 1, "batch_size": 8, "lr": 3e-3, "dropout": 0.0,
        "schedule": "none", "angles": [0, 180, 45], "eq_error_samples": 8, "bn_calibration_batches": 2,
        "resources": {"cpu": 1}}


def _spec(tmp_path: Path, name: str, **settings) -> Path:
    path = tmp_path / f"{name}.yaml"
    spec = {"name": name, **FAST, "storage": str(tmp_path / "store"), "wandb": {"mode": "disabled"}, **settings}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _sweep_cli(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "equisweep", "sweep", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


@pytest.mark.trains
def test_packed_trials_land_in_the_tables_and_in_wandb_one_row_per_seed(tmp_path, ray_local):
    # The exact p4 cell in float64, so that its seeds unpacked (below) must give the very same numbers; at width 4, as
    # float64 convolutions train 2.5 times slower than float32 ones on a CPU.
    sweep = load_sweep(_spec(tmp_path, "four", wandb={"mode": "offline", "project": "equisweep-test"}, variants=[
        {"group": "z2", "input_size": 28}, {"group": "z2", "input_size": 29},
        {"group": "p4", "input_size": 28, "precision": "64-true", "width": 4}, {"group": "p4", "input_size": 29}],
        grid={"seed": [0, 1]}))
    assert [pack.seeds for pack in sweep.packs] == [[0, 1]] * 4  # packed by default: four trials, eight seed-runs
    outcome = run_sweep(sweep, verbose=0)

    assert outcome.counts == {"finished": 8}
    table = read_results(outcome.path)
    assert len(table) == 8 and table["trial_id"].is_unique
    assert table["trial_id"].str.rsplit("-seed", n=1).str[0].nunique() == 4  # a Tune trial per pack
    assert table["seed"].tolist() == [0, 1] * 4 and table["cell"].tolist() == list(range(8))
    arms = [("z2", 28, None), ("z2", 29, None), ("p4", 28, True), ("p4", 29, False)]  # exactness: n/a for z2
    assert list(zip(table["group"], table["input_size"], table["exact"])) == [arm for arm in arms for _ in (0, 1)]
    assert (table["epochs"] == 1).all() and (table["lr"] == 3e-3).all() and (table["dataset"] == "mnist69").all()
    for column in ("val_acc", "test_acc_upright", "test_acc_orbit", "test_acc_mean_angles", "test_acc_min_angles"):
        assert table[column].between(0, 1).all(), column
    assert (table["test_acc_upright"] > 0.5).all()  # one epoch really trains, every copy
    assert table.groupby(["group", "input_size"])["eq_error"].nunique().eq(2).all()  # the seeds made two nets
    p4 = table[table["group"] == "p4"]
    exact, approx = p4[p4["input_size"] == 28], p4[p4["input_size"] == 29]
    assert exact["eq_error"].max() < 1e-4 < approx["eq_error"].min()
    assert exact["eq_error/block7"].max() < 1e-4 < approx["eq_error/block2"].min()

    angles = read_angles(outcome.path)
    # mnist69 tells a 6 from a 9: a half turn swaps the labels, and 45 degrees leaves them undefined (not scored)
    assert len(angles) == 8 * 2 and set(angles["angle"]) == {0.0, 180.0}
    upright = angles[angles["angle"] == 0].set_index("trial_id")["accuracy"]
    assert upright.to_dict() == pytest.approx(table.set_index("trial_id")["test_acc_upright"].to_dict())
    for exact_id in table[(table["group"] == "p4") & (table["input_size"] == 28)]["trial_id"]:
        exact_angles = angles[angles["trial_id"] == exact_id].set_index("angle")["accuracy"]
        # an exact p4 net is invariant: it calls a turned 6 a 6 again, against its swapped label
        assert exact_angles[180.0] == pytest.approx(1 - exact_angles[0.0])

    # one offline W&B run per seed-run, in the WANDB_DIR the trials inherit, grouped by the sweep's name, with the
    # seed-run's config, results and arm
    runs = {}
    for run_file in Path(os.environ["WANDB_DIR"], "wandb").glob("offline-run-*/run-*.wandb"):
        logged = read_wandb_run(run_file)
        if logged["group"] == "four":
            runs[logged["config"]["run_name"]] = logged
    assert sorted(runs) == sorted(table["trial_name"])
    for row in table.itertuples():
        logged = runs[row.trial_name]
        assert logged["project"] == "equisweep-test"
        assert logged["job_type"] == arm_label(row.group, row.input_size, row.exact)
        assert (logged["config"]["group"], logged["config"]["input_size"], logged["config"]["seed"]) == (
            row.group, row.input_size, row.seed)
        assert logged["summary"]["test_acc_upright"] == pytest.approx(row.test_acc_upright)
        assert {"val_acc", "train_loss"} <= logged["history_keys"]
    assert status_text(outcome.path).startswith("four: 8 trials, 8 finished, 0 running, 0 pending")

    # The same seeds unpacked (pack: 1): the same rows (settings, seeds, statuses) and, in float64, the same metrics.
    # (In float32 they differ by float32 noise, carried on by Adam: packed convolutions sum in another order.)
    one = load_sweep(_spec(tmp_path, "one", group="p4", grid={"seed": [0, 1]}, pack=1, precision="64-true", width=4))
    assert [pack.seeds for pack in one.packs] == [[0], [1]]
    unpacked = read_results(run_sweep(one, verbose=0).path).set_index("seed")
    packed = table[(table["group"] == "p4") & (table["input_size"] == 28)].set_index("seed")
    measured = ("trial_id", "trial_name", "cell", "wandb_group", "wandb_mode", "wandb_project", "started_at",
                "trial_seconds", "train_seconds", "train_loss", "val_acc", "eq_error", "lee")
    settings = [key for key in unpacked.columns if key in packed.columns and key not in measured
                and not key.startswith(("test_acc", "eq_error/"))]
    assert unpacked[settings].astype(object).to_dict() == packed[settings].astype(object).to_dict()
    for column in ("val_acc", "test_acc_upright", "test_acc_orbit", "test_acc_mean_angles"):
        assert unpacked[column].tolist() == pytest.approx(packed[column].tolist(), abs=1e-9), column
    assert (packed["trial_seconds"] > 0).all()  # a copy's share of its pack's time
    assert (unpacked["eq_error"] < 1e-4).all()


class StorageOutage(tune.Callback):
    """Storage that fails under a new sweep: ``results.parquet`` cannot be replaced until the first trial has
    completed (a directory stands in its place), and no finished record can be written at all (a file stands where
    the ``finished`` directory goes). Runs after ``ResultsTable``, in the same driver."""

    def __init__(self, sweep_dir: Path) -> None:
        self.sweep_dir = sweep_dir

    def setup(self, **info) -> None:
        if not (self.sweep_dir / "results.parquet").exists():  # the new sweep, not its resume
            (self.sweep_dir / "results.parquet").mkdir(parents=True)
            (self.sweep_dir / "finished").write_text("")

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        if (self.sweep_dir / "results.parquet").is_dir():
            (self.sweep_dir / "results.parquet").rmdir()


def test_optuna_searches_inside_each_cell_and_storage_failures_never_fail_a_trial(tmp_path, ray_local, caplog):
    # Two packs (a size each, two seeds), two Optuna samples each: four trials, eight seed-runs; a sample serves
    # both seeds of its pack.
    sweep = load_sweep(_spec(tmp_path, "optuna", group="z2", grid={"input_size": [28, 29], "seed": [0, 1]},
                             search={"num_samples": 2, "space": {"lr": {"loguniform": [1e-3, 1e-2]}}}))
    sweep_dir = tmp_path / "store" / "optuna"
    with caplog.at_level(logging.ERROR, logger="equisweep"):
        outcome = run_sweep(sweep, verbose=0, callbacks=[StorageOutage(sweep_dir)])

    table = read_results(outcome.path)
    assert outcome.counts == {"finished": 8}
    assert table.groupby("input_size").size().to_dict() == {28: 4, 29: 4}
    assert table["cell"].tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert table["lr"].between(1e-3, 1e-2).all() and table["lr"].nunique() == 4  # sampled, not the spec's lr
    assert table.groupby("lr")["seed"].apply(sorted).tolist() == [[0, 1]] * 4  # a sample per pack, not per seed
    assert table["val_acc"].notna().all() and table["test_acc_upright"].notna().all()
    assert (table["attempts"] == 0).all()  # the failed writes neither failed nor re-ran a trial
    assert table["angles"].map(json.loads).tolist() == [[0, 180, 45]] * 8  # list settings kept, as JSON text
    errors = [record.getMessage() for record in caplog.records if record.levelno == logging.ERROR]
    assert any(message.startswith("could not write the results tables (3 attempts)") for message in errors)
    assert sum(message.startswith("could not record the result of ") for message in errors) >= 8
    assert (sweep_dir / "finished").is_file()  # no record could be written: the table alone says finished

    # Storage recovers; Tune's state holds the four trials TERMINATED with their test metrics, but no record: a
    # resume counts their eight seed-runs finished (not stopped), writes their records and trains nothing again.
    (sweep_dir / "finished").unlink()
    resumed = run_sweep(sweep, resume=True, verbose=0)
    assert resumed.counts == {"finished": 8}
    after = read_results(outcome.path).set_index("trial_id")
    records = {path.stem: json.loads(path.read_text()) for path in (sweep_dir / "finished").glob("*.json")}
    assert sorted(records) == sorted(after.index)
    for trial_id, row in table.set_index("trial_id").iterrows():
        assert records[trial_id]["test_acc_upright"] == after.loc[trial_id, "test_acc_upright"]
        assert after.loc[trial_id, "train_seconds"] == row["train_seconds"]
    assert len(read_angles(outcome.path)) == 8 * 2


@pytest.mark.trains
def test_a_failing_trial_is_recorded_the_others_finish_and_the_command_exits_1(tmp_path):
    # Two packs of two seeds: every copy of the first diverges, so that pack fails; the second finishes.
    spec = _spec(tmp_path, "fails", group="z2", max_failures=0, variants=[{"optimizer": "sgd", "lr": 1.0e12}, {}],
                 grid={"seed": [0, 1]})
    sweep_dir = tmp_path / "store" / "fails"
    driver = _sweep_cli(str(spec), "--num-cpus", "2")
    out, err = driver.communicate(timeout=600)

    assert driver.returncode == 1, err
    assert out.splitlines()[-1] == f"results: {sweep_dir}/results.parquet"
    assert err.splitlines()[-1] == ("equisweep: 2 of 4 trials failed; see why with: "
                                    f"equisweep sweep --status {sweep_dir}")
    table = read_results(str(sweep_dir))
    failed, finished = table[table["optimizer"] == "sgd"], table[table["optimizer"] == "adam"]
    assert failed["seed"].tolist() == finished["seed"].tolist() == [0, 1]
    assert (failed["status"] == "failed").all() and (finished["status"] == "finished").all()
    assert failed["error"].str.match(r"FloatingPointError: every copy of the pack failed; copy \d: training loss "
                                     "is ").all()
    assert failed["test_acc_upright"].isna().all() and (finished["test_acc_upright"] > 0.5).all()
    assert "failed" in status_text(str(sweep_dir)).splitlines()[1]


def test_stopped_or_killed_driver_resumes_without_rerunning_finished_trials(tmp_path):
    # Two trials at a time on one CPU: one runs while the next waits
    spec = _spec(tmp_path, "resume", group="z2", grid={"seed": list(range(6))}, max_concurrent=2, pack=2)
    sweep_dir = tmp_path / "store" / "resume"
    # Ctrl-C once a trial runs: Tune stops the trials and keeps its state; the waiting trial, never started, has no
    # metrics yet, and that is no error
    stopped = _sweep_cli(str(spec), "--num-cpus", "1")
    assert any(" started with configuration" in line for line in iter(stopped.stderr.readline, ""))
    stopped.send_signal(signal.SIGINT)
    out, err = stopped.communicate(timeout=120)
    assert stopped.returncode == 0, err
    assert "Experiment has been interrupted, but the most recent state was saved" in err
    assert "Failed to fetch metrics" not in err and "FileNotFoundError" not in err
    # Nothing ended: the two packs under way and the one Tune had not created yet wait, and the sweep says so
    resume_line = (f"  resume with: equisweep sweep SPEC --resume --storage {tmp_path / 'store'} "
                   "(SPEC: the sweep's YAML)")
    lines = out.splitlines()
    assert lines[0] == "resume: 6 trials, 0 finished, 0 running, 6 pending, 0 stopped, 0 failed"
    assert lines[1].startswith(f"stopped: the driver (pid {stopped.pid} on {socket.gethostname()}) ended ")
    assert lines[2] == resume_line and not any("done" in line for line in lines)
    interrupted = read_results(str(sweep_dir))
    assert sorted(interrupted["seed"]) == list(range(6)) and interrupted["trial_id"].isna().sum() == 2
    assert status_text(str(sweep_dir)).splitlines()[0:3:2] == lines[0:3:2]  # and so does --status

    driver = _sweep_cli(str(spec), "--resume", "--num-cpus", "1", start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # wait until at least one trial is finished and recorded
        time.sleep(0.5)  # three packs run one after another: the kill lands while some are left
        if (sweep_dir / "results.parquet").exists():
            table = read_results(str(sweep_dir))
            if (table["status"] == "finished").sum() >= 1:
                break
        assert driver.poll() is None, driver.stderr.read()
    beating = read_driver(str(sweep_dir))  # the driver's record on the storage: this process, refreshed, not ended
    assert (beating.host, beating.pid, beating.ended_at) == (socket.gethostname(), driver.pid, None)
    assert beating.heartbeat - beating.started_at >= BEAT_EVERY_S  # a trial took longer than one beat
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and the Ray it started, without any clean-up
    driver.wait(timeout=60)
    gone = status_text(str(sweep_dir)).splitlines()  # trials left running or pending, and nobody to run them
    assert gone[1].startswith(f"stopped: the driver is gone (no process {driver.pid} on {socket.gethostname()}; ")
    assert gone[2] == resume_line
    assert not any("left" in line for line in gone)
    watched = list(watch_status(str(sweep_dir), interval=600))  # --watch stops at once: nothing runs
    assert len(watched) == 1 and watched[0].splitlines()[1].startswith("stopped: the driver is gone")
    before = read_results(str(sweep_dir)).set_index("trial_id")
    finished_before = before[before["status"] == "finished"]
    assert 1 <= len(finished_before) < 6

    again = _sweep_cli(str(spec))  # a sweep of this name exists: without --resume it refuses, before Ray starts
    assert again.wait(timeout=120) == 2 and "pass --resume" in again.stderr.read()

    resumed = _sweep_cli(str(spec), "--resume", "--num-cpus", "1")
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    assert out.startswith("resume: 6 trials, 6 finished")
    after = read_results(str(sweep_dir)).set_index("trial_id")
    assert len(after) == 6 and after.index.is_unique and (after["status"] == "finished").all()
    assert sorted(after["seed"]) == list(range(6))
    assert after.index.str.rsplit("-seed", n=1).str[0].value_counts().tolist() == [2] * 3  # three packs of two
    for trial_id, row in finished_before.iterrows():  # not trained again: the very same measurements
        assert after.loc[trial_id, "train_seconds"] == row["train_seconds"]
        assert after.loc[trial_id, "test_acc_upright"] == row["test_acc_upright"]
    assert len(read_angles(str(sweep_dir))) == 6 * 2
    assert status_text(str(sweep_dir)).startswith("resume: 6 trials, 6 finished, 0 running")


def test_dry_run_lists_the_paper_grid_with_exact_flags():
    result = subprocess.run([sys.executable, "-m", "equisweep", "sweep", "sweeps/paper_rotmnist.yaml", "--dry-run"],
                            capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[3])
    assert result.returncode == 0, result.stderr
    header, table = result.stdout.split("\n\n")  # the pre-flight header, then the trials
    assert [line.split(":")[0] for line in header.splitlines()] == ["storage", "wandb", "resources", "concurrency"]
    lines = table.splitlines()
    # 20 cells of 100 seeds, packed 16 at a time: seven trials a cell, the last of four seeds.
    assert lines[-2:] == ["140 packed trials of up to 16 seeds (pack), resources each", "2000 trials"]
    assert len(lines) == 140 + 2 and [line.split()[5] for line in lines[:7]] == [
        "seeds=0-15", "seeds=16-31", "seeds=32-47", "seeds=48-63", "seeds=64-79", "seeds=80-95", "seeds=96-99"]
    flags = {}
    for line in lines[:-2]:
        _, *settings = line.split()
        values = dict(setting.split("=") for setting in settings)
        arm = (values["group"], int(values["input_size"]), values["subsampling"])
        flags.setdefault(arm, set()).add(values["exact"])
    assert flags == {("p4", 27, "stride"): {"no"}, ("p4", 28, "stride"): {"yes"}, ("p4", 29, "stride"): {"no"},
                     ("p4", 29, "adaptive"): {"yes"}, ("z2", 28, "stride"): {"-"}}


@pytest.mark.parametrize(("args", "message"), [
    (["--address", "127.0.0.1:1"], "address: cannot reach a Ray cluster at '127.0.0.1:1'"),
    (["--address", "ray://127.0.0.1:1"], "address: 'ray://127.0.0.1:1' is a Ray Client address, where Tune runs on "
     "the head and this process cannot read its results; submit the sweep as a job instead: ray job submit"),
    (["--address", "nowhere"], "address: 'nowhere' is not auto or HOST:PORT"),
    (["--wandb-mode", "loud"], "wandb.mode: must be 'auto', 'online', 'offline' or 'disabled', got 'loud'"),
])
def test_bad_command_lines_exit_2_before_anything_starts(tmp_path, ray_local, capsys, monkeypatch, args, message):
    # in this process, beside the session's Ray: a connected process refuses a wrong address all the same
    spec = _spec(tmp_path, "bad", group="z2")
    monkeypatch.setattr(sys, "argv", ["equisweep", "sweep", str(spec), *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert exit_.value.code == 2 and len(lines) == 1 and lines[0].startswith("equisweep: error: ")
    assert message in lines[0] and out == ""
    assert not (tmp_path / "store").exists()


@pytest.mark.trains
def test_asha_stops_hopeless_samples_within_a_cell_never_across_cells(tmp_path, ray_local):
    # Sequential trials, so the first sets ASHA's bar at epoch 1. Two cells, the second with a hopeless lr: cells are
    # never compared, so both train to the end and are tested (one ASHA over the sweep would stop the second).
    asha = {"epochs": 2, "max_concurrent": 1, "scheduler": {"grace_period": 1, "reduction_factor": 2}}
    cells = load_sweep(_spec(tmp_path, "cells", group="z2", variants=[{"lr": 3e-3}, {"lr": 1e-7}], **asha))
    run = run_sweep(cells, verbose=0)
    table = read_results(run.path)
    assert table["lr"].tolist() == [3e-3, 1e-7]
    assert table["status"].tolist() == ["finished", "finished"] and table["epoch"].tolist() == [2, 2]
    assert table["test_acc_upright"].notna().all() and (table["wandb_group"] == "cells").all()
    assert (table["started_at"] > 0).all()  # finished rows keep when they started, so --status can time a done sweep
    assert re.fullmatch(r"elapsed \d:\d\d:\d\d, done", status_text(run.path).splitlines()[1])

    # One searched cell whose search tries a good point, then a hopeless one (Optuna hands its start points out in
    # order): the hopeless sample falls below the rung's median at epoch 1 and stops there, untested. Only one
    # hopeless sample: identical hopeless samples tie at the median, and ASHA keeps a tie.
    searched = load_sweep(_spec(tmp_path, "searched", group="z2", **asha, search={
        "num_samples": 2, "space": {"lr": {"choice": [3e-3, 1e-7]}}, "start": [{"lr": 3e-3}, {"lr": 1e-7}]}))
    table = read_results(run_sweep(searched, verbose=0).path).set_index("lr")
    assert sorted(table.index) == [1e-7, 3e-3]
    good, hopeless = table.loc[3e-3], table.loc[1e-7]
    assert (good.status, good.epoch) == ("finished", 2) and good.test_acc_upright > 0.5
    assert (hopeless.status, hopeless.epoch) == ("stopped", 1) and pd.isna(hopeless.test_acc_upright)
