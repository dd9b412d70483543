"""Classify with a network equisweep trained. Any checkpoint equisweep writes (a run, a sweep trial, a packed copy)
loads with no other argument: the network is rebuilt from the recipe in its hyperparameters.

    equisweep train --dataset mnist69 --model p4cnn --epochs 1 --out runs/p4cnn
    python examples/classify_with_checkpoint.py runs/p4cnn

prints, per run directory, one JSON line: the classes it gives its first test images, and its test accuracies
measured again here, as its ``metrics.json`` has them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytorch_lightning as pl
import torch

import equisweep
from equisweep.datamodules import build_datamodule
from equisweep.pipeline import load_run_config


def classify(run_dir: Path, count: int = 8) -> dict:
    # The same as EquivarianceClassifier.load_from_checkpoint(path).eval()
    module = equisweep.load(run_dir / "checkpoints" / "best.ckpt")
    config = load_run_config({}, run_dir / "config.yaml")  # the run's data: source, input size, split seed
    data = config.data
    datamodule = build_datamodule(data.dataset, data.input_size, data_dir=data.data_dir, seed=config.seed,
                                  resize_method=data.resize_method)
    datamodule.setup("test")
    with torch.no_grad():  # upright test images, normalised as in training
        classes = module(datamodule.eval_sample(count).to(module.device)).argmax(-1)
    trainer = pl.Trainer(precision=config.hardware.precision, logger=False, enable_progress_bar=False)
    trainer.test(module, datamodule=datamodule, verbose=False)  # the protocol: upright, orbit, angle sweep
    return {"classes": classes.tolist(), **module.test_results}


if __name__ == "__main__":
    for run in sys.argv[1:]:
        print(json.dumps(classify(Path(run))))
