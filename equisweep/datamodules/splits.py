"""What every reader shares: seeded stratified splits, and the pipeline that brings a PIL image to a uint8 square.

Every split is drawn from a ``torch.Generator`` seeded by the caller and stratified by class, so a seed names one
split on every machine.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchvision.transforms import v2

from equisweep.errors import UserError

Split = tuple[Tensor, Tensor]  # images uint8 [N, C, H, W] (contiguous), labels int64 [N]


def stratified_split(labels: Tensor, fractions: Sequence[float], generator: torch.Generator) -> list[Tensor]:
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


def check_val_fraction(val_fraction: float) -> None:
    if not 0.0 < val_fraction < 1.0:
        raise UserError(f"val_fraction: must lie strictly between 0 and 1, got {val_fraction}")


def hold_out(labels: Tensor, val_fraction: float, generator: torch.Generator) -> list[Tensor]:
    """(kept, held) indices: a stratified ``val_fraction`` of each class held out for validation."""
    return stratified_split(labels, (1.0 - val_fraction, val_fraction), generator)


def square_uint8(image_size: int) -> v2.Transform:
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
