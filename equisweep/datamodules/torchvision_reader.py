"""Sources read (and downloaded) by torchvision's own dataset classes, with their official splits.

In-memory sources (``mnist``, ``cifar10``, ``cifar100``) are read whole from torchvision's ``.data``/``.targets``
arrays rather than item by item; a stratified ``val_fraction`` of the official train split validates (both
shuffled), and test is the official test split in its own order. Streamed sources (``flowers102``, ``pcam``) keep
their three official splits, each item brought to ``image_size`` by a ``transforms.v2`` pipeline.

File names follow torchvision's layout under ``data_dir`` (the ``root`` torchvision takes); torchvision itself
verifies the checksums it knows when ``prepare`` opens each split.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock
from torch.utils.data import Dataset
from torchvision import datasets
from torchvision.transforms import v2

from equisweep.datamodules.record import Reader, Source
from equisweep.datamodules.splits import Split, check_val_fraction, hold_out, square_uint8
from equisweep.errors import UserError
from equisweep.files import first_missing

# Official split -> the constructor arguments of torchvision's class that select it.
TRAIN_TEST: Mapping[str, Mapping[str, Any]] = {"train": {"train": True}, "test": {"train": False}}
TRAIN_VAL_TEST: Mapping[str, Mapping[str, Any]] = {split: {"split": split} for split in ("train", "val", "test")}


class DatasetNotFoundError(UserError):
    """A dataset's files are missing (or fail torchvision's check) and downloading was not allowed."""


@dataclass(frozen=True)
class Torchvision(Reader):
    """A torchvision dataset class, the files it opens (relative to ``data_dir``, the names of torchvision's class
    data, in the order they are reported missing) and its official splits."""

    dataset: type[datasets.VisionDataset]
    files: tuple[str, ...]
    splits: Mapping[str, Mapping[str, Any]]
    in_memory: bool

    def prepare(self, source: Source, data_dir: Path, download: bool) -> None:
        """Make sure every split can be opened from ``data_dir``, downloading it if ``download``.

        Opening each split through torchvision also runs torchvision's own checks (md5 of the CIFAR batches and the
        Flowers-102 ``.mat`` files). Files that fail them when downloading is off raise ``DatasetNotFoundError`` too.
        """
        if download:
            self._download(source, data_dir)
            return
        missing = self.missing(data_dir)
        if missing is not None:
            raise DatasetNotFoundError(f"dataset '{source.name}' not found in {data_dir} (missing {missing}): "
                                       "set --data-dir, or allow download with --download")
        for split in self.splits:
            try:
                self._open(data_dir, split)
            except RuntimeError as err:
                raise DatasetNotFoundError(
                    f"dataset '{source.name}' in {data_dir} failed torchvision's integrity check (a file is corrupt "
                    "or from another release): delete its files and allow download with --download"
                ) from err

    def _download(self, source: Source, data_dir: Path) -> None:
        made = first_missing(data_dir)
        had = set() if made is not None else set(data_dir.iterdir())
        data_dir.mkdir(parents=True, exist_ok=True)
        try:
            # Concurrent sweep trials share data_dir: one downloads, the others wait and then find the files.
            with FileLock(data_dir / f".{source.name}.download.lock"):
                for split in self.splits:
                    self._open(data_dir, split, download=True)
        except (OSError, RuntimeError) as err:  # no network (URLError), or torchvision's "Error downloading"
            for new in [made] if made is not None else set(data_dir.iterdir()) - had:  # only what this call made
                if new.is_dir():
                    shutil.rmtree(new)
                else:
                    new.unlink()
            reason = str(getattr(err, "reason", err)).splitlines()[0]
            raise DatasetNotFoundError(f"dataset '{source.name}': the download into {data_dir} failed ({reason}); "
                                       "check the network, or fetch its files on a machine that has one") from None

    def load(self, source: Source, data_dir: Path, seed: int, image_size: int | None,
             val_fraction: float) -> dict[str, Split] | dict[str, Dataset]:
        if not self.in_memory:
            return {split: self._open(data_dir, split, transform=square_uint8(image_size)) for split in self.splits}
        check_val_fraction(val_fraction)
        images, labels = self._tensors(source, data_dir, "train")
        train_idx, val_idx = hold_out(labels, val_fraction, torch.Generator().manual_seed(seed))
        return {
            "train": (images[train_idx], labels[train_idx]),
            "val": (images[val_idx], labels[val_idx]),
            "test": self._tensors(source, data_dir, "test"),
        }

    def _open(self, data_dir: Path, split: str, download: bool = False,
              transform: v2.Transform | None = None) -> datasets.VisionDataset:
        """One official split through torchvision's own reader."""
        return self.dataset(str(data_dir), download=download, transform=transform, **self.splits[split])

    def _tensors(self, source: Source, data_dir: Path, split: str) -> Split:
        """A whole official split from torchvision's arrays: MNIST keeps [N, H, W] tensors, CIFAR [N, H, W, C]
        numpy."""
        ds = self._open(data_dir, split)
        labels = torch.as_tensor(ds.targets, dtype=torch.int64)
        if source.channels == 1:
            return ds.data.unsqueeze(1).contiguous(), labels  # [N, 28, 28] -> [N, 1, 28, 28]
        return torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(), labels  # [N, H, W, C] -> [N, C, H, W]
