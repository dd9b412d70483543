"""Shared test set-up: CPU only, fixed seeds, few threads, no network."""

import os
import tempfile

import pytest
import torch

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("WANDB_MODE", "disabled")  # tests that log set offline mode themselves
os.environ.setdefault("WANDB_DIR", tempfile.mkdtemp(prefix="equisweep-wandb-"))
torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
