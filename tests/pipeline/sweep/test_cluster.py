"""Sweeps on a real two-node Ray cluster on one machine (``cluster/local_two_node.sh``): a sweep submitted as a Ray
job, and a sweep driven with ``--address`` that loses its worker node in the middle of a trial.

The two tests share one cluster (head and worker, 1 CPU each, on free ports, in a short temp dir; starting one takes
half a minute), in this order: the job first, then the sweep that kills the worker node. The cluster is always stopped,
whatever happens: the script ends only that cluster's processes, never another Ray on the machine. Nothing is mocked;
a trial is one epoch of the P4CNN (or plain CNN) on embedded MNIST digits.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from ray.job_submission import JobStatus, JobSubmissionClient

from equisweep.errors import UserError
from equisweep.pipeline.sweep import results as r

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "cluster" / "local_two_node.sh"
PYTHON = sys.executable
RAY = str(Path(sys.executable).parent / "ray")  # the ray of this venv, also what the script runs

# Two packed trials (a group each) of two seeds, one epoch of mnist69's 600 digits: one per node when both run.
TINY = {"dataset": "mnist69", "model": "p4cnn", "epochs": 1, "batch_size": 8, "lr": 0.003, "dropout": 0.0,
        "schedule": "none", "angles": [0, 180], "eq_error_samples": 8, "bn_calibration_batches": 2,
        "grid": {"group": ["z2", "p4"], "seed": [0, 1]}, "resources": {"cpu": 1}, "max_failures": 2,
        "wandb": {"mode": "disabled"}}


@dataclass(frozen=True)
class Cluster:
    address: str  # HOST:PORT of the head's GCS, for --address
    dashboard: str  # http://HOST:PORT, for ray job submit
    env: dict[str, str]  # the script's settings, for every command against this cluster

    def script(self, command: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(SCRIPT), command], env=self.env, capture_output=True, text=True,
                              timeout=timeout)

    def alive_nodes(self) -> int | None:
        status = self.script("status", timeout=90)
        for line in status.stdout.splitlines():
            if line.startswith("ALIVE_NODES="):
                return int(line.split("=", 1)[1])
        return None


def _ports_free(ports: range) -> bool:
    for port in ports:
        with socket.socket() as sock:
            try:
                sock.bind(("", port))
            except OSError:
                return False
    return True


def _free_base_port() -> int:
    """RAY_PORT with RAY_PORT ... RAY_PORT+10 free: the script's fixed ports, and the dashboard at +10. Between
    Ray's worker ports (10002-19999) and the kernel's ephemeral range (32768+)."""
    rng = random.Random(os.getpid() ^ time.monotonic_ns())
    for _ in range(200):
        base = rng.randrange(20000, 32000, 20)
        if _ports_free(range(base, base + 11)):
            return base
    raise RuntimeError("no 11 consecutive free ports in 20000-32000")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    base = _free_base_port()
    cluster_dir = tempfile.mkdtemp(prefix="esr-", dir="/tmp")  # short: Ray's Unix sockets live under it
    env = {**os.environ, "RAY": RAY, "RAY_PORT": str(base), "DASHBOARD_PORT": str(base + 10),
           "CLUSTER_DIR": cluster_dir, "HEAD_CPUS": "1", "WORKER_CPUS": "1", "STOP_GRACE_S": "3",
           "WANDB_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    handle = Cluster(f"127.0.0.1:{base}", f"http://127.0.0.1:{base + 10}", env)
    try:
        started = handle.script("start", timeout=240)
        assert started.returncode == 0, f"cluster start failed:\n{started.stdout[-3000:]}\n{started.stderr[-3000:]}"
        assert f"RAY_ADDRESS={handle.address}" in started.stdout
        yield handle
    finally:
        handle.script("stop", timeout=120)
        shutil.rmtree(cluster_dir, ignore_errors=True)


def _write_spec(tmp_path: Path, name: str, **settings) -> Path:
    spec = tmp_path / f"{name}.yaml"
    spec.write_text(yaml.safe_dump({"name": name, "data_dir": str(tmp_path / "data"), **TINY, **settings}))
    return spec


def _statuses(sweep_dir: Path) -> list[str]:
    try:
        return list(r.read_results(str(sweep_dir))["status"])
    except (UserError, OSError, ValueError):  # not written yet
        return []


def _wait_for(condition: Callable[[], bool], timeout: float, what: str, alive: subprocess.Popen | None = None,
              log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if alive is not None and alive.poll() is not None:
            pytest.fail(f"the driver ended (exit {alive.returncode}) before {what}:\n{_tail(log)}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}:\n{_tail(log)}")
        time.sleep(0.5)


def _tail(log: Path | None, chars: int = 4000) -> str:
    return log.read_text(errors="replace")[-chars:] if log is not None and log.is_file() else ""


def _assert_all_finished(sweep_dir: Path, seeds: list[int]) -> None:
    # Two trials (one per group) of these seeds each: a row per seed-run.
    table = r.read_results(str(sweep_dir))
    runs = [(group, seed) for group in ("z2", "p4") for seed in seeds]
    assert len(table) == len(runs)
    assert list(table["status"]) == ["finished"] * len(runs), table[["trial_id", "status", "error"]]
    assert list(zip(table["group"], table["seed"])) == runs
    assert table["trial_id"].str.rsplit("-seed", n=1).str[0].nunique() == 2
    assert table["test_acc_upright"].between(0, 1).all()
    assert table["eq_error"].notna().all()
    angles = r.read_angles(str(sweep_dir))
    assert len(angles) == 2 * len(runs)  # 2 test angles per seed-run


def test_ray_job_submit_runs_a_sweep_to_completion(cluster, tmp_path):
    spec = _write_spec(tmp_path, "job")
    storage = tmp_path / "storage"
    # The dry run joins the cluster and counts its two nodes: on a real cluster a local path is each node's own disk.
    dry = subprocess.run([PYTHON, "-m", "equisweep", "sweep", str(spec), "--dry-run", "--address", cluster.address,
                          "--storage", str(storage)], env=cluster.env, capture_output=True, text=True, timeout=120)
    assert dry.returncode == 0, dry.stderr[-2000:]
    assert f"warning: storage: {storage / 'job'} is a local path and the cluster has 2 nodes" in dry.stderr
    job_id = f"equisweep-test-{uuid.uuid4().hex[:8]}"
    submit = subprocess.run(
        [RAY, "job", "submit", "--address", cluster.dashboard, "--submission-id", job_id,
         "--runtime-env-json", '{"env_vars": {"WANDB_MODE": "disabled"}}', "--",
         PYTHON, "-m", "equisweep", "sweep", str(spec), "--storage", str(storage)],
        env=cluster.env, capture_output=True, text=True, timeout=480)
    assert submit.returncode == 0, f"{submit.stdout[-4000:]}\n{submit.stderr[-4000:]}"
    jobs = JobSubmissionClient(cluster.dashboard)
    assert jobs.get_job_status(job_id) == JobStatus.SUCCEEDED
    assert "job: 4 trials, 4 finished" in jobs.get_job_logs(job_id)  # the driver's own summary line
    _assert_all_finished(storage / "job", [0, 1])


def test_sweep_finishes_after_the_worker_node_dies_mid_trial(cluster, tmp_path):
    # One seed per trial, on the 3,000 digits of mnist5k: a trial trains long enough to be killed mid-way.
    spec = _write_spec(tmp_path, "failover", dataset="mnist5k", grid={"group": ["z2", "p4"], "seed": [0]})
    storage = tmp_path / "storage"
    sweep_dir = storage / "failover"
    log = tmp_path / "driver.log"
    with log.open("w") as out:
        driver = subprocess.Popen(
            [PYTHON, "-m", "equisweep", "sweep", str(spec), "--address", cluster.address, "--storage", str(storage)],
            env=cluster.env, stdout=out, stderr=subprocess.STDOUT)
    try:
        # The table shows a running trial, then a trial (Tune's function trainable, ray::ImplicitFunc) runs on the
        # worker node: 1 CPU per node and per trial, so that one is not the head's. Kill the node at once, while the
        # trial is mid-way (its training alone takes 15 s or more).
        _wait_for(lambda: "running" in _statuses(sweep_dir), 300, "results.parquet to show a running trial", driver,
                  log)
        _wait_for(lambda: "ray::ImplicitFunc" in cluster.script("worker-actors").stdout, 240,
                  "a trial running on the worker node", driver, log)
        killed = cluster.script("kill-worker")
        assert killed.returncode == 0, killed.stderr
        _wait_for(lambda: cluster.alive_nodes() == 1, 180, "the GCS to mark the worker node dead", log=log)
        driver.wait(timeout=420)
    finally:
        if driver.poll() is None:
            driver.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                driver.wait(timeout=30)
    assert driver.returncode == 0, _tail(log)
    _assert_all_finished(sweep_dir, [0])
    attempts = r.read_results(str(sweep_dir))["attempts"]
    assert attempts.max() >= 1, "the trial on the killed node should have failed once and been retried"
