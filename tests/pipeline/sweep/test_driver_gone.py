"""``--status`` tells a sweep whose driver is gone from one that runs: the driver's heartbeat on the storage. (A real
driver killed mid-sweep: ``test_sweep.py::test_killed_driver_resumes_without_rerunning_finished_trials``.)"""

import json
import os
import socket

from equisweep.pipeline.sweep.heartbeat import DRIVER_FILE, STALE_S, read_driver
from equisweep.pipeline.sweep.status import status_text
from tests.pipeline.sweep.test_status import NOW, _finished, _running, _write


def _driver(sweep_dir, host: str, heartbeat: float, ended_at: float | None = None) -> None:
    record = {"host": host, "pid": os.getpid(), "started_at": NOW - 600, "heartbeat": heartbeat, "ended_at": ended_at}
    (sweep_dir / DRIVER_FILE).write_text(json.dumps(record))


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
