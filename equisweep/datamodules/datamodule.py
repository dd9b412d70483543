"""The LightningDataModule for every source: splits, input size, normalisation and the training regime.

One class serves all datasets (deviating from one-class-per-dataset on purpose: what differs between them,
files, splits, statistics and label action, lives in each source's record in ``sources.py``; the device pipeline
below is the same for all).

Every loader yields uint8 images [B, C, H, W] and labels. ``on_after_batch_transfer`` then does the rest on the
training device, batch-wise: to float, to ``input_size`` (``resize``: bilinear like the paper; ``pad``/``crop``:
centred, pixels intact), normalise with the source's per-pixel statistics, and, for training batches only, the
training-symmetry regime (per example, every step). Validation and test batches stay upright; the evaluation
views (rotations, orbit) are applied by the LightningModule, which scores each view against the labels the source's
``label_action`` gives the turned images, and skips the views where it leaves them undefined.

Sources that fit in memory live as one uint8 tensor on the training device and are sliced there (no worker
processes); the others (flowers102, pcam, a folder of images) stream through DataLoaders with workers.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import get_args

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader

from equisweep.datamodules import sources
from equisweep.datamodules.label_action import LabelAction
from equisweep.datamodules.regimes import Regime, parse_regime, transform_batch
from equisweep.errors import UserError
from equisweep.pipeline.train.config import ResizeMethod

RESIZE_METHODS = get_args(ResizeMethod)


def fit_size(x: Tensor, size: int, method: str) -> Tensor:
    """Bring float images [B, C, H, W] to [B, C, size, size] with ``method`` (see the module docstring)."""
    h, w = x.shape[-2:]
    if (h, w) == (size, size):
        return x
    if method == "resize":
        return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=size < min(h, w))
    # pad and crop: the odd pixel goes to the bottom/right, the content stays where the pixels were
    grow_h, grow_w = size - h, size - w
    return F.pad(x, (grow_w // 2, grow_w - grow_w // 2, grow_h // 2, grow_h - grow_h // 2))  # negative pads crop


class DeviceBatches:
    """Batches sliced from tensors that already live on the training device; reshuffled each epoch."""

    def __init__(self, images: Tensor, labels: Tensor, batch_size: int, shuffle: bool,
                 generator: torch.Generator | None = None) -> None:
        self.images, self.labels, self.batch_size = images, labels, batch_size
        self.shuffle, self.generator = shuffle, generator

    def __len__(self) -> int:
        return -(-len(self.labels) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        n = len(self.labels)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        order = order.to(self.images.device)
        for start in range(0, n, self.batch_size):
            index = order[start:start + self.batch_size]
            yield self.images[index], self.labels[index]


class EquiDataModule(pl.LightningDataModule):
    """Train/val/test for one source at ``input_size`` under the ``train_symmetry`` regime."""

    def __init__(self, dataset: str = "mnist5k", input_size: int = 28, train_symmetry: str | Regime = "none",
                 batch_size: int = 64, eval_batch_size: int = 500, data_dir: str | Path = "data",
                 download: bool = False, seed: int = 0, resize_method: str = "resize", num_workers: int = 2,
                 per_batch: bool = False) -> None:
        super().__init__()
        # a folder dataset is read here: its classes and statistics come from its files (see sources.py)
        self.source = sources.get_source(dataset, Path(data_dir), num_workers)
        if resize_method not in RESIZE_METHODS:
            raise UserError(f"resize_method: unknown method {resize_method!r}; choose from: "
                            f"{', '.join(RESIZE_METHODS)}")
        native = self.source.native_size
        if native is not None and resize_method == "pad" and input_size < native:
            raise UserError(f"resize_method: pad cannot shrink {native} to {input_size}; use crop or resize")
        if native is not None and resize_method == "crop" and input_size > native:
            raise UserError(f"resize_method: crop cannot grow {native} to {input_size}; use pad or resize")
        self.regime = train_symmetry if isinstance(train_symmetry, Regime) else parse_regime(train_symmetry, per_batch)
        self.input_size, self.resize_method = input_size, resize_method
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.data_dir, self.download = Path(data_dir), download
        self.seed, self.num_workers = seed, num_workers
        self.mean = torch.tensor(self.source.mean).view(1, -1, 1, 1)
        self.std = torch.tensor(self.source.std).view(1, -1, 1, 1)
        self.fill = (-self.mean / self.std).flatten()  # a black pixel, normalised: what rotations bring in
        self.splits: dict = {}

    @property
    def num_classes(self) -> int:
        return self.source.num_classes

    @property
    def in_channels(self) -> int:
        return self.source.channels

    @property
    def label_action(self) -> LabelAction:
        """How the labels of turned (and mirrored) test images follow from the upright ones."""
        return self.source.label_action

    @property
    def background(self) -> list[float]:
        """The normalised value of a black pixel, per channel: what rotations fill in from outside."""
        return self.fill.tolist()

    def prepare_data(self) -> None:
        sources.prepare(self.source, self.data_dir, self.download)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        self.mean, self.std, self.fill = (t.to(device) for t in (self.mean, self.std, self.fill))
        if self.source.in_memory:
            tensors = sources.load_tensors(self.source, self.data_dir, self.seed)
            self.splits = {name: (x.to(device), y.to(device)) for name, (x, y) in tensors.items()}
        else:
            self.splits = sources.load_datasets(self.source, self.data_dir, self.seed,
                                                self.source.native_size or self.input_size)
        self._shuffle = torch.Generator().manual_seed(self.seed)
        self._augment = torch.Generator().manual_seed(self.seed + 1)
        self._calibrate = torch.Generator()

    def _loader(self, split: str, train: bool):
        batch = self.batch_size if train else self.eval_batch_size
        data = self.splits[split]
        if self.source.in_memory:
            return DeviceBatches(*data, batch, shuffle=train, generator=self._shuffle)
        return DataLoader(data, batch_size=batch, shuffle=train, generator=self._shuffle if train else None,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                          pin_memory=torch.cuda.is_available())

    def train_dataloader(self):
        return self._loader("train", train=True)

    def val_dataloader(self):
        return self._loader("val", train=False)

    def test_dataloader(self):
        return self._loader("test", train=False)

    def on_after_batch_transfer(self, batch: tuple[Tensor, Tensor], dataloader_idx: int) -> tuple[Tensor, Tensor]:
        images, labels = batch
        training = self.trainer is not None and self.trainer.training
        return self.prepare_batch(images, training), labels

    def prepare_batch(self, images: Tensor, training: bool = False, generator: torch.Generator | None = None
                      ) -> Tensor:
        """uint8 [B, C, H, W] -> normalised float [B, C, input_size, input_size]; if ``training``, with the regime
        drawn from ``generator`` (default: the training stream's own)."""
        x = fit_size(images.float().div_(255), self.input_size, self.resize_method)
        x = (x - self.mean.to(x.device)) / self.std.to(x.device)
        if training:
            x = transform_batch(x, self.regime, generator or self._augment, self.fill)
        return x

    def calibration_batches(self, count: int, device: torch.device) -> Iterator[Tensor]:
        """``count`` training batches as training sees them (regime applied), in a fixed order and with their own
        random draws, so calibrating never shifts the training stream."""
        self._calibrate.manual_seed(self.seed + 2)
        data = self.splits["train"]
        if self.source.in_memory:
            batches = DeviceBatches(*data, self.batch_size, shuffle=False)
        else:
            batches = DataLoader(data, batch_size=self.batch_size, num_workers=self.num_workers)
        for i, (images, _) in enumerate(batches):
            if i == count:
                return
            yield self.prepare_batch(images.to(device), training=True, generator=self._calibrate)

    def eval_sample(self, count: int, split: str = "test") -> Tensor:
        """The first ``count`` upright images of ``split``, prepared as the model sees them."""
        data = self.splits[split]
        if self.source.in_memory:
            images = data[0][:count]
        else:
            images = torch.stack([data[i][0] for i in range(min(count, len(data)))])
        return self.prepare_batch(images)


def build_datamodule(name: str = "mnist5k", input_size: int = 28, train_symmetry: str = "none",
                     batch_size: int = 64, data_dir: str | Path = "data", seed: int = 0, **kwargs) -> EquiDataModule:
    """The datamodule for dataset ``name``; keyword arguments as ``EquiDataModule``."""
    return EquiDataModule(name, input_size, train_symmetry, batch_size, data_dir=data_dir, seed=seed, **kwargs)
