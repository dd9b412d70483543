"""The ``folder`` source: a user's own images (ImageNet in its usual layout, for one).

``data_dir/train/<class>/<image>`` and ``data_dir/val/<class>/...``, optionally ``data_dir/test/<class>/...``, read
by torchvision's ``ImageFolder`` (every image as RGB). With ``test/``, the three folders are the three splits.
Without it, ``val/`` is the test split and a stratified ``val_fraction`` of ``train/`` validates (the best
checkpoint is never chosen on the reported images).

Unlike the other sources, a folder's classes and statistics are not known before its files are read, so its record
is completed from ``data_dir`` (``Folder.describe``): the classes are the subfolders of ``train/``, and the
per-channel mean and std are computed once over at most ``STATS_IMAGES`` training images (evenly spaced in file
order) at ``STATS_SIZE`` pixels, and cached in ``data_dir/equisweep_stats.json`` (written atomically, under a lock,
so concurrent trials compute it once). The cache is reused while the class list and the number of training images
stay the same, and recomputed when either changes (delete the file to force it). A read-only ``data_dir`` gets its
statistics recomputed by every run, with a warning. An image PIL cannot decode is a one-line error naming the file,
raised where it is first read: while computing the statistics, or when a batch is loaded.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from filelock import FileLock
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import datasets
from torchvision.transforms import v2

from equisweep.datamodules.record import Reader, Source
from equisweep.datamodules.splits import check_val_fraction, hold_out, square_uint8
from equisweep.errors import UserError
from equisweep.files import write_atomically

log = logging.getLogger(__name__)

FOLDER = "folder"
CHANNELS = 3  # ImageFolder's reader converts every image to RGB
STATS_FILE = "equisweep_stats.json"
STATS_SIZE = 64  # statistics at one fixed size, whatever the input size of a run
STATS_IMAGES = 10_000  # enough for 3 decimals; ImageNet's 1.28M would take hours to decode


class CorruptImageError(UserError):
    """An image file of a folder dataset that PIL cannot decode.

    Raised in a DataLoader worker, it is rebuilt in the main process by torch, from the worker's whole formatted
    traceback as its only argument; keeping only the last line's message leaves the user one line either way.
    """

    def __init__(self, message: str) -> None:
        last = message.rstrip().splitlines()[-1]
        super().__init__(last.split(f"{type(self).__name__}: ", 1)[-1])


@dataclass(frozen=True)
class Folder(Reader):
    """A folder of images per class and split (module docstring)."""

    in_memory: ClassVar[bool] = False
    files: ClassVar[tuple[str, ...]] = ("train", "val")  # the splits a folder dataset needs; test/ is optional

    def describe(self, source: Source, data_dir: Path | None, num_workers: int) -> Source:
        """Check the layout of the folder and read (or compute, with ``num_workers`` loader workers, and cache) its
        statistics."""
        if data_dir is None:
            raise ValueError("get_source: a folder dataset is read from data_dir; pass it")
        data_dir = Path(data_dir)
        missing = self.missing(data_dir)
        if missing is not None:
            raise UserError(f"data_dir: {data_dir} has no {missing}/ folder; a folder dataset needs train/ and val/ "
                            "(and optionally test/), each with one subfolder of images per class")
        splits = [split for split in (*self.files, "test") if (data_dir / split).is_dir()]
        classes = {split: _class_names(data_dir / split) for split in splits}
        for split in splits[1:]:
            if classes[split] != classes["train"]:
                only_train = sorted(set(classes["train"]) - set(classes[split]))
                only_here = sorted(set(classes[split]) - set(classes["train"]))
                raise UserError(f"data_dir: the classes of {split}/ differ from those of train/ (only in train/: "
                                f"{', '.join(only_train) or 'none'}; only in {split}/: "
                                f"{', '.join(only_here) or 'none'}); give every split the same class folders")
        mean, std = _statistics(data_dir, num_workers)
        return dataclasses.replace(source, num_classes=len(classes["train"]), mean=mean, std=std)

    def load(self, source: Source, data_dir: Path, seed: int, image_size: int | None,
             val_fraction: float) -> dict[str, Dataset]:
        """train/val/test: its three folders, or without test/, val/ as test and a stratified ``val_fraction`` of
        train/ as validation."""
        transform = square_uint8(image_size)
        folders = {split: _image_folder(data_dir / split, transform)
                   for split in (*self.files, "test") if (data_dir / split).is_dir()}
        if "test" in folders:
            return folders
        check_val_fraction(val_fraction)
        train = folders["train"]
        labels = torch.as_tensor(train.targets, dtype=torch.int64)
        kept, held = hold_out(labels, val_fraction, torch.Generator().manual_seed(seed))
        if held.numel() == 0:
            raise UserError(f"data_dir: {data_dir} has no test/ folder, so val/ is the test split and validation "
                            f"takes {val_fraction:g} of each class of train/, which is no image here; add a test/ "
                            "folder")
        return {"train": Subset(train, kept.tolist()), "val": Subset(train, held.tolist()), "test": folders["val"]}


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
    _class_names(split_dir)  # no class folder at all: the same line as in Folder.describe
    folder = datasets.ImageFolder(str(split_dir), transform=transform, loader=_read_rgb, allow_empty=True)
    counts = torch.bincount(torch.as_tensor(folder.targets, dtype=torch.int64), minlength=len(folder.classes))
    empty = [name for name, count in zip(folder.classes, counts.tolist()) if count == 0]
    if empty:
        raise UserError(f"data_dir: the class folder {split_dir / empty[0]} holds no images (looked for "
                        f"{', '.join(datasets.folder.IMG_EXTENSIONS)}); add images or remove the folder")
    return folder


def _statistics(data_dir: Path, num_workers: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of the training images, from the cache while it matches the files."""
    train = _image_folder(data_dir / "train", square_uint8(STATS_SIZE))
    key = {"classes": train.classes, "train_images": len(train), "size": STATS_SIZE, "max_images": STATS_IMAGES}
    if not os.access(data_dir, os.W_OK):
        log.warning("data_dir %s is read-only: computing the folder statistics without caching them", data_dir)
        return _channel_statistics(train, num_workers)
    cache = data_dir / STATS_FILE
    with FileLock(data_dir / f".{STATS_FILE}.lock"):  # concurrent trials: one computes, the others read
        if cache.exists():
            cached = json.loads(cache.read_text())
            if {k: cached.get(k) for k in key} == key:
                return tuple(cached["mean"]), tuple(cached["std"])
        mean, std = _channel_statistics(train, num_workers)
        write_atomically(cache, json.dumps({**key, "mean": mean, "std": std}, indent=1))
    return mean, std


def _channel_statistics(images: Dataset, num_workers: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and std per channel over every pixel of at most ``STATS_IMAGES`` images, evenly spaced."""
    count = min(len(images), STATS_IMAGES)
    picked = torch.linspace(0, len(images) - 1, count).round().long().unique().tolist()
    total = torch.zeros(CHANNELS, dtype=torch.float64)
    squares = torch.zeros(CHANNELS, dtype=torch.float64)
    pixels = 0
    for batch, _ in DataLoader(Subset(images, picked), batch_size=256, num_workers=num_workers):
        x = batch.double().div_(255)
        total += x.sum(dim=(0, 2, 3))
        squares += x.square().sum(dim=(0, 2, 3))
        pixels += x.numel() // CHANNELS
    mean = total / pixels
    std = (squares / pixels - mean.square()).clamp_min(0).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())
