"""``equisweep sweep --status DIR [--watch]``: progress per arm, running trials, elapsed time and time left."""

import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from equisweep.cli import app
from equisweep.pipeline.sweep.results import trial_row, write_tables
from equisweep.pipeline.sweep.status import status_text, watch_status
from equisweep.pipeline.train.config import RunConfig

NOW = 1_800_000_000.0
ARMS = {"p4-28": ("p4", 28, True), "p4-29": ("p4", 29, False), "z2-28": ("z2", 28, None)}


def _row(trial_id: str, arm: str, status: str, result: dict, error: str | None = None) -> dict:
    group, input_size, exact = ARMS[arm]
    settings = RunConfig(group=group, input_size=input_size, epochs=5).flat(mode="json")
    return trial_row(trial_id, trial_id, list(ARMS).index(arm), settings, exact, status, error, 0, result)


def _finished(trial_id: str, arm: str, seconds: float, started: float) -> dict:
    # A finished trial's row comes from its recorded final result: what it reported, Tune's time_total_s and
    # when it started.
    return _row(trial_id, arm, "finished", {"val_acc": 0.95, "test_acc_upright": 0.94, "epoch": 5,
                                            "time_total_s": seconds, "started_at": started})


def _running(trial_id: str, arm: str, epoch: int, val_acc: float, started: float) -> dict:
    # Tune's last result of a running trial: what it reported, when (timestamp) and its time so far.
    reported = started + 30
    return _row(trial_id, arm, "running", {"val_acc": val_acc, "epoch": epoch, "timestamp": reported,
                                           "time_total_s": reported - started})


def _write(sweep_dir: Path, rows: list[dict]) -> str:
    write_tables(str(sweep_dir), rows, [])
    return str(sweep_dir)


def test_status_counts_per_arm_lists_running_trials_and_estimates_the_time_left(tmp_path):
    rows = [_finished("a", "p4-28", 100, NOW - 300), _finished("b", "p4-29", 140, NOW - 200),
            _running("c", "p4-28", 3, 0.91234, NOW - 50),
            _row("d", "z2-28", "pending", {}), _row("e", "z2-28", "pending", {}),
            _row("f", "p4-29", "failed", {}, error="RuntimeError: out of memory"),
            _row("g", "z2-28", "stopped", {"time_total_s": 10.0})]
    lines = status_text(_write(tmp_path / "prog", rows), now=NOW).splitlines()
    assert lines[0] == "prog: 7 trials, 2 finished, 1 running, 2 pending, 1 stopped, 1 failed"
    assert lines[1] == "  failed f: RuntimeError: out of memory"
    # A mean finished trial takes 120 s: two pending trials 240 s, the running one 70 s more, one trial at a time.
    assert lines[2] == ("elapsed 0:05:00, about 0:05:10 left (a finished trial took 0:02:00 on average; 1 running "
                        "at once)")
    assert lines[3:8] == [
        "arm           finished   running   pending   stopped    failed",
        "p4 28 exact          1         1         0         0         0",
        "p4 29 approx         1         0         0         0         1",
        "plain CNN 28         0         0         2         1         0",
        "  running c  p4 28 exact  epoch 3/5  val_acc 0.912",
    ]
    assert len(lines) == 8


def test_two_trials_running_at_once_halve_the_time_left(tmp_path):
    rows = [_finished("a", "p4-28", 100, NOW - 140), _running("b", "p4-28", 1, 0.5, NOW - 40),
            _running("c", "p4-29", 1, 0.5, NOW - 40), *(_row(f"p{i}", "z2-28", "pending", {}) for i in range(3))]
    timing = status_text(_write(tmp_path / "two", rows), now=NOW).splitlines()[1]
    assert timing == "elapsed 0:02:20, about 0:03:30 left (a finished trial took 0:01:40 on average; 2 running at once)"


def test_no_estimate_before_a_trial_finishes_and_done_after(tmp_path):
    running = [_running("a", "p4-28", 1, 0.5, NOW - 20), _row("b", "p4-28", "pending", {})]
    assert status_text(_write(tmp_path / "s", running), now=NOW).splitlines()[1] == \
        "elapsed 0:00:20, time left unknown until a trial finishes"
    # Done: from the first start to the last end, whenever it is read.
    done = [_finished("a", "p4-28", 100, NOW - 300), _finished("b", "p4-28", 100, NOW - 250)]
    assert status_text(_write(tmp_path / "s", done), now=NOW + 999).splitlines()[1] == "elapsed 0:02:30, done"


def test_watch_reprints_until_nothing_is_pending_or_running(tmp_path):
    sweep_dir = _write(tmp_path / "w", [_finished("a", "p4-28", 100, NOW - 100),
                                        _running("b", "z2-28", 2, 0.8, time.time())])
    texts = watch_status(sweep_dir, interval=0.01)
    assert next(texts).startswith("w: 2 trials, 1 finished, 1 running, 0 pending")
    assert next(texts).startswith("w: 2 trials, 1 finished, 1 running, 0 pending")  # unchanged: still watching
    _write(tmp_path / "w", [_finished("a", "p4-28", 100, NOW - 100), _finished("b", "z2-28", 90, NOW)])
    assert next(texts).startswith("w: 2 trials, 2 finished, 0 running, 0 pending")
    assert next(texts, None) is None


@pytest.mark.timeout(60)
def test_watch_on_a_finished_sweep_prints_once_and_exits(tmp_path):
    sweep_dir = _write(tmp_path / "f", [_finished("a", "p4-28", 100, NOW - 100)])
    started = time.monotonic()
    result = CliRunner().invoke(app, ["sweep", "--status", sweep_dir, "--watch", "--interval", "600"])
    assert result.exit_code == 0, result.output
    assert result.stdout.count("f: 1 trials, 1 finished") == 1 and time.monotonic() - started < 60


def test_watch_from_the_command_line_follows_a_changing_table(tmp_path):
    sweep_dir = _write(tmp_path / "c", [_running("a", "p4-28", 1, 0.5, time.time())])
    watcher = subprocess.Popen([sys.executable, "-m", "equisweep", "sweep", "--status", sweep_dir, "--watch",
                                "--interval", "0.2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert watcher.stdout.readline().startswith("c: 1 trials, 0 finished, 1 running")  # printed, and still watching
    _write(tmp_path / "c", [_finished("a", "p4-28", 100, NOW - 100)])
    out, err = watcher.communicate(timeout=120)
    assert watcher.returncode == 0, err
    blocks = out.strip().split("\n\n")
    assert blocks[-1].startswith("c: 1 trials, 1 finished, 0 running") and "done" in blocks[-1]
    assert all(" 1 running" in block.splitlines()[0] for block in blocks[:-1])
