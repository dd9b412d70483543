"""``--status`` tells a sweep whose driver is gone from one that runs: the driver's heartbeat on the storage."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import yaml

from equisweep.pipeline.sweep.heartbeat import BEAT_EVERY_S, DRIVER_FILE, STALE_S, read_driver
from equisweep.pipeline.sweep.results import RESULTS_FILE, read_results
from equisweep.pipeline.sweep.status import status_text, watch_status
from tests.pipeline.sweep.test_damage import SPEC
from tests.pipeline.sweep.test_status import NOW, _finished, _running, _write


def _driver(sweep_dir, host: str, heartbeat: float, ended_at: float | None = None) -> None:
    record = {"host": host, "pid": os.getpid(), "started_at": NOW - 600, "heartbeat": heartbeat, "ended_at": ended_at}
    (sweep_dir / DRIVER_FILE).write_text(json.dumps(record))


@pytest.mark.slow
def test_status_says_a_killed_driver_is_gone_and_how_to_resume(tmp_path):
    spec = tmp_path / "gone.yaml"
    spec.write_text(yaml.safe_dump({**SPEC, "name": "gone", "storage": str(tmp_path / "store"), "epochs": 2,
                                    "grid": {"seed": [0]}}))
    sweep_dir = tmp_path / "store" / "gone"
    driver = subprocess.Popen([sys.executable, "-m", "equisweep", "sweep", str(spec), "--num-cpus", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline, first_beat = time.monotonic() + 300, None
    while time.monotonic() < deadline:  # until a trial runs and the driver has refreshed its heartbeat
        time.sleep(0.5)
        assert driver.poll() is None, driver.stderr.read()
        record = read_driver(str(sweep_dir)) if (sweep_dir / RESULTS_FILE).exists() else None
        first_beat = first_beat or (record and record.heartbeat)
        if record and record.heartbeat > first_beat and "running" in set(read_results(str(sweep_dir))["status"]):
            break
    alive = status_text(str(sweep_dir)).splitlines()
    assert (record.host, record.pid) == (socket.gethostname(), driver.pid) and record.ended_at is None
    assert record.heartbeat - first_beat >= BEAT_EVERY_S
    assert " 1 running" in alive[0] and alive[1].startswith("elapsed ")  # alive: it says how it goes

    os.killpg(driver.pid, signal.SIGKILL)  # the driver and its Ray, without any clean-up
    driver.wait(timeout=60)
    lines = status_text(str(sweep_dir)).splitlines()
    assert " 1 running" in lines[0]  # as the table was left
    assert lines[1].startswith(f"stopped: the driver is gone (no process {driver.pid} on {socket.gethostname()}; "
                               "last heartbeat ")
    assert lines[2] == (f"  resume with: equisweep sweep SPEC --resume --storage {tmp_path / 'store'} "
                        "(SPEC: the sweep's YAML)")
    assert not any("left" in line for line in lines)
    watched = list(watch_status(str(sweep_dir), interval=600))  # --watch stops at once: nothing runs
    assert len(watched) == 1 and watched[0].splitlines()[1].startswith("stopped: the driver is gone")


def test_a_driver_on_another_host_is_gone_when_its_heartbeat_is_stale(tmp_path):
    sweep_dir = tmp_path / "far"
    _write(sweep_dir, [_running("a", "p4-28", 1, 0.5, NOW - 300)])
    _driver(sweep_dir, "another-host", heartbeat=NOW - 30)  # its pid cannot be checked from here
    assert status_text(str(sweep_dir), now=NOW).splitlines()[1].startswith("elapsed 0:05:00")
    _driver(sweep_dir, "another-host", heartbeat=NOW - STALE_S - 1)
    assert status_text(str(sweep_dir), now=NOW).splitlines()[1] == (
        f"stopped: the driver is gone (pid {os.getpid()} on another-host: last heartbeat 0:01:01 ago); its running "
        "and pending trials wait")


def test_a_driver_that_ended_with_trials_left_is_gone_one_that_finished_is_done(tmp_path):
    sweep_dir = tmp_path / "ended"
    _write(sweep_dir, [_finished("a", "p4-28", 100, NOW - 300), _running("b", "p4-28", 1, 0.5, NOW - 100)])
    _driver(sweep_dir, socket.gethostname(), heartbeat=NOW - 10, ended_at=NOW - 10)  # this process: alive
    assert status_text(str(sweep_dir), now=NOW).splitlines()[1] == (
        f"stopped: the driver (pid {os.getpid()} on {socket.gethostname()}) ended 0:00:10 ago; its running and "
        "pending trials wait")
    _write(sweep_dir, [_finished("a", "p4-28", 100, NOW - 300), _finished("b", "p4-28", 90, NOW - 100)])
    assert status_text(str(sweep_dir), now=NOW).splitlines()[1] == "elapsed 0:04:50, done"


def test_an_unreadable_driver_record_tells_nothing(tmp_path):
    sweep_dir = tmp_path / "torn"
    _write(sweep_dir, [_running("a", "p4-28", 1, 0.5, NOW - 300)])
    (sweep_dir / DRIVER_FILE).write_text('{"host": "another-host", "pi')
    assert read_driver(str(sweep_dir)) is None
    assert status_text(str(sweep_dir), now=NOW).splitlines()[1].startswith("elapsed 0:05:00")
