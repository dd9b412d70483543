"""Shared test set-up: CPU only, fixed seeds, few threads, no network.

Ray runs for real on loopback: HOME points at an empty directory whose ``ray_bootstrap_config.yaml`` says the
provider is local, so Ray's start-up never probes cloud metadata addresses; subprocesses inherit all of this.
"""

import os
import tempfile
from pathlib import Path

import pytest
import torch

_HOME = Path(tempfile.mkdtemp(prefix="equisweep-home-"))
(_HOME / "ray_bootstrap_config.yaml").write_text("provider: {type: local}\n")
os.environ["HOME"] = str(_HOME)
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("WANDB_MODE", "disabled")  # tests that log set offline mode themselves
os.environ.setdefault("WANDB_DIR", tempfile.mkdtemp(prefix="equisweep-wandb-"))
os.environ.pop("RAY_ADDRESS", None)  # the embedded Ray, never a cluster the machine happens to know
os.environ["EQUISWEEP_STRICT_COLUMNS"] = "1"  # a results row that strays from its declared columns raises
torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def ray_local():
    """One embedded Ray (2 CPUs, loopback) shared by every in-process sweep test: ``ray.init`` costs seconds."""
    import ray

    from equisweep.pipeline.sweep.driver import connect

    connect(None, num_cpus=2)
    yield
    ray.shutdown()
