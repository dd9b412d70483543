"""A trial worker that Ray's memory monitor kills does not crash the sweep driver with a traceback: the sweep resumes
its unfinished trials, up to ``max_failures`` times, then says in one line what to change and how to continue.

Real Ray, started by the command in its own process with a memory threshold a little above what the machine uses
now; the trial's first training step (a batch of 64 digits at 400 pixels) needs gigabytes more, so the monitor
kills it there, every time. Linux only, as Ray's memory monitor. The threshold follows the machine's use when the
test starts: another process that takes or frees gigabytes meanwhile can move the kill (or stop it happening)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

# More than the driver and a trial worker need to start (about 2 GB), well below what the trial's first step takes
# (6.3 GB more, measured: a 400-pixel batch of 64 through the P4CNN and back).
MARGIN_BYTES = 4_000_000_000


def _threshold() -> str:
    """The fraction of the machine's memory used now, plus ``MARGIN_BYTES``, as Ray reads its threshold."""
    info = {key: int(value.split()[0]) * 1024 for key, value in
            (line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())}
    return f"{(info['MemTotal'] - info['MemAvailable'] + MARGIN_BYTES) / info['MemTotal']:.3f}"


@pytest.mark.skipif(not Path("/proc/meminfo").is_file(), reason="Ray's memory monitor runs on Linux only")
def test_workers_killed_for_memory_resume_the_sweep_then_end_in_one_line(tmp_path):
    spec = tmp_path / "hungry.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "hungry", "dataset": "mnist69", "model": "p4cnn", "group": "z2", "input_size": 400, "batch_size": 64,
        "epochs": 1, "schedule": "none", "angles": [0], "max_failures": 1, "storage": str(tmp_path / "store"),
        "wandb": {"mode": "disabled"}}))
    env = {**os.environ, "RAY_memory_usage_threshold": _threshold(), "RAY_memory_monitor_refresh_ms": "100"}
    driver = subprocess.run([sys.executable, "-m", "equisweep", "sweep", str(spec), "--num-cpus", "1"], env=env,
                            capture_output=True, text=True, timeout=540)

    lines = driver.stderr.strip().splitlines()
    assert driver.returncode == 2, [line for line in lines if line.startswith(("equisweep", "RuntimeError"))]
    assert "Traceback" not in driver.stderr
    resumed = [line for line in lines if "a trial's worker was killed for memory" in line]
    assert len(resumed) == 1 and resumed[0].endswith("; resuming the sweep")  # max_failures: 1
    assert lines[-1].startswith("equisweep: error: max_failures: Ray killed trial workers for memory 2 times (")
    assert lines[-1].endswith("and continue with --resume")
