"""Every checkpoint equisweep writes (a run's, a packed copy's) is a Lightning checkpoint that loads with
``EquivarianceClassifier.load_from_checkpoint(path)`` alone, in a fresh process, and tests as its run did."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from equisweep.models import build_model
from equisweep.pipeline import EquivarianceClassifier
from equisweep.pipeline import vocabulary as m
from equisweep.pipeline.train.packing import checkpoint_writer, run_packed
from equisweep.pipeline.train.run import run_one
from tests.pipeline.train.test_packing import tiny

EXAMPLE = Path(__file__).parents[3] / "examples" / "classify_with_checkpoint.py"
# 15 steps of an approximate p4 net (at 13 pixels) that tells 6 from 9 (an exact one cannot: 180 degrees swaps them),
# in float64: the fresh process may run other kernels (thread count) than the run, and its accuracies must not move.
LEARNS = dict(epochs=1, batch_size=40, lr=1e-2, dropout=0.0, train_symmetry="none", group="p4", input_size=13,
              precision="64-true")


@pytest.mark.slow
def test_a_run_and_packed_copies_reload_alone_in_a_fresh_process_and_test_as_they_did(tmp_path):
    run_one(tiny(0, **LEARNS), tmp_path / "run", enable_progress_bar=False)
    run_packed([tiny(seed, **LEARNS) for seed in (0, 1)], [tmp_path / "copy0", tmp_path / "copy1"])
    dirs = [tmp_path / name for name in ("run", "copy0", "copy1")]
    for run_dir in dirs:
        saved = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=True)
        assert {"pytorch-lightning_version", "epoch", "state_dict", "hyper_parameters"} <= set(saved)
        assert saved["hyper_parameters"]["recipe"]["name"] == "p4cnn"
    # The example loads each with equisweep.load (load_from_checkpoint(path).eval()) and tests it with Lightning.
    done = subprocess.run([sys.executable, str(EXAMPLE), *map(str, dirs)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for run_dir, line in zip(dirs, done.stdout.splitlines(), strict=True):
        again = json.loads(line)
        expected = json.loads((run_dir / "metrics.json").read_text())
        for key in (m.TEST_ACC_UPRIGHT, m.TEST_ACC_ORBIT, m.TEST_ACC_BY_ANGLE):
            assert again[key] == expected[key], (run_dir.name, key)
        assert len(again["classes"]) == 8 and set(again["classes"]) <= {0, 1}


def _save(module: EquivarianceClassifier, path: Path) -> Path:
    writer = checkpoint_writer("cpu")
    writer.strategy.connect(module)
    writer.save_checkpoint(path)
    return path


def test_a_module_built_from_a_recipe_reloads_from_it_and_one_given_a_backbone_asks_for_it(tmp_path):
    module = EquivarianceClassifier(recipe=dict(name="p4cnn", group="p4m", num_classes=3, width=2)).double().eval()
    restored = EquivarianceClassifier.load_from_checkpoint(_save(module, tmp_path / "recipe.ckpt")).eval()
    x = torch.randn(2, 1, 28, 28, dtype=torch.float64)
    assert restored.dtype == torch.float64 and torch.equal(restored(x), module(x))  # float64 weights stay float64
    assert restored.hparams.num_classes == 3 and restored.hparams.orbit_group == "p4m"

    own = EquivarianceClassifier(build_model("p4cnn", width=2), 10).eval()  # a network without a recipe
    path = _save(own, tmp_path / "own.ckpt")
    with pytest.raises(ValueError, match="give a backbone, or recipe"):
        EquivarianceClassifier.load_from_checkpoint(path)
    given = EquivarianceClassifier.load_from_checkpoint(path, backbone=build_model("p4cnn", width=2)).eval()
    assert torch.equal(given(x.float()), own(x.float()))
