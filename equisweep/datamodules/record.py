"""``Source``: one record per dataset, holding everything equisweep knows about it before reading an image (classes,
channels, native size, pixel statistics, label action) and its ``Reader``, which knows its files, downloads them,
and reads its splits. The registry of records is ``sources.SOURCES``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch.utils.data import Dataset

from equisweep.datamodules.label_action import INVARIANT, LabelAction
from equisweep.datamodules.splits import Split


class Reader:
    """How a source's splits are read. Each reader declares ``in_memory`` (True: whole splits fit in memory as uint8
    tensors; False: torchvision datasets stream items) and ``files`` (what must exist under ``data_dir``, relative
    to it, in the order a missing one is reported)."""

    in_memory: bool
    files: tuple[str, ...]

    def missing(self, data_dir: Path) -> str | None:
        """The first of ``files`` that ``data_dir`` lacks, or None when all are there."""
        return next((f for f in self.files if not (data_dir / f).exists()), None)

    def describe(self, source: Source, data_dir: Path | None, num_workers: int) -> Source:
        """The full record of ``source``: itself, unless its description is read from its files."""
        return source

    def prepare(self, source: Source, data_dir: Path, download: bool) -> None:
        """Check (or download) the files every split needs; run once, in one process."""

    def load(self, source: Source, data_dir: Path, seed: int, image_size: int | None,
             val_fraction: float) -> dict[str, Split] | dict[str, Dataset]:
        """Splits ``train``, ``val`` and ``test``: uint8 tensors in memory, else datasets of ``image_size`` squares."""
        raise NotImplementedError


@dataclass(frozen=True)
class Source:
    """What the datamodule and models need to know about a dataset, and how to read it."""

    name: str
    num_classes: int | None  # None: known only from its files (a folder of images)
    channels: int
    native_size: int | None  # None: images come in many sizes (flowers102, a folder)
    mean: tuple[float, ...] | None  # per-channel pixel statistics of the training images in [0, 1]; None: from files
    std: tuple[float, ...] | None
    reader: Reader
    label_action: LabelAction = INVARIANT  # how labels move when images turn (label_action.py)

    @property
    def in_memory(self) -> bool:
        return self.reader.in_memory

    @property
    def files(self) -> tuple[str, ...]:
        return self.reader.files
