"""The sweep driver's record of itself on the sweep's storage (``DRIVER_FILE``): its host, its process id, when it
started, a heartbeat it refreshes while it runs, and when it ended.

The table alone cannot tell a running sweep from one whose driver was killed: both show trials running. With this
record ``--status`` can: a driver is gone when it ended, when its process no longer exists on this host, or (seen
from any host) when its heartbeat is older than ``STALE_S``.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from dataclasses import asdict, dataclass, replace

from equisweep.pipeline.sweep.results import put_file, read_file

DRIVER_FILE = "driver.heartbeat"  # JSON, but not *.json: restoring a sweep, Tune copies the top-level
# .json files to its own folder and uploads them again, which would put the old driver's record back
BEAT_EVERY_S = 5.0
STALE_S = 60.0  # a dozen missed beats: only a driver that is dead or hung keeps this quiet


@dataclass(frozen=True)
class DriverRecord:
    host: str
    pid: int
    started_at: float
    heartbeat: float
    ended_at: float | None = None


class Heartbeat:
    """This process as the sweep's driver: ``beat`` writes the record, then refreshes it at most every
    ``BEAT_EVERY_S``; ``end`` marks it ended. A failed write raises; the next beat tries again."""

    def __init__(self, sweep_uri: str) -> None:
        self.sweep_uri = sweep_uri
        self.record = DriverRecord(socket.gethostname(), os.getpid(), time.time(), heartbeat=-math.inf)

    def beat(self) -> None:
        now = time.time()
        if now - self.record.heartbeat >= BEAT_EVERY_S:
            self.record = replace(self.record, heartbeat=now)  # before the write: a failing store is not hammered
            self._write()

    def end(self) -> None:
        now = time.time()
        self.record = replace(self.record, heartbeat=now, ended_at=now)
        self._write()

    def _write(self) -> None:
        put_file(self.sweep_uri, DRIVER_FILE, json.dumps(asdict(self.record)).encode())


def read_driver(sweep_uri: str) -> DriverRecord | None:
    """The driver's record; None for a sweep whose driver never wrote one, or whose record is unreadable (it tells
    nothing then; the next beat of a live driver rewrites it)."""
    data = read_file(sweep_uri, DRIVER_FILE)
    try:
        return None if data is None else DriverRecord(**json.loads(data))
    except (ValueError, TypeError):
        return None


def process_gone(record: DriverRecord) -> bool:
    """Whether the driver's process is known to be gone: it ran on this host and no process has its id now."""
    if record.host != socket.gethostname():
        return False  # another host's processes cannot be seen from here; its heartbeat tells
    try:
        os.kill(record.pid, 0)  # signal 0: nothing is sent, the call only checks that the process exists
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # it exists, under another user
    return False
