"""Pooling for group feature maps: spatial pooling per group slot, and pooling over the group axis."""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn


class SpatialPool(nn.Module):
    """Max or average pooling over the plane, applied to every (channel, group slot) alike.

    in [B, C, |G|, H, W] (or [B, C, H, W]) -> out of the same rank, H' = (H + 2p - k) // s + 1 (ceil with
    ``ceil_mode``). Subsamples with kernel k, stride s (default k), padding p: it commutes with the group iff the
    sampled grid is symmetric, (H + 2p - k) % s == 0 on a square map (a 2x2/2 pool needs H even).
    """

    def __init__(self, kind: Literal["max", "avg"], kernel_size: int, stride: int | None = None,
                 padding: int = 0, ceil_mode: bool = False) -> None:
        super().__init__()
        if kind not in ("max", "avg"):
            raise ValueError(f"kind must be 'max' or 'avg', got {kind!r}")
        self.kind, self.kernel_size = kind, kernel_size
        self.stride, self.padding, self.ceil_mode = stride or kernel_size, padding, ceil_mode

    def forward(self, x: Tensor) -> Tensor:
        planes = x.flatten(1, -3)  # [B, C·|G|, H, W]
        pool = F.max_pool2d if self.kind == "max" else F.avg_pool2d
        y = pool(planes, self.kernel_size, self.stride, self.padding, ceil_mode=self.ceil_mode)
        return y.view(*x.shape[:-2], *y.shape[-2:])

    def extra_repr(self) -> str:
        return f"{self.kind}, kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class GroupPool(nn.Module):
    """Max or mean over the group axis: the invariant ("coset") reduction.

    in [B, C, |G|, ...] -> out [B, C, ...]. The output no longer carries the regular representation: a group
    element acts on it through the plane only (or not at all once the plane is pooled too). No subsampling.
    ``keep`` [|G|] (0/1, identity kept) restricts the reduction to the kept slots (partial equivariance).
    """

    def __init__(self, kind: Literal["max", "mean"] = "max") -> None:
        super().__init__()
        if kind not in ("max", "mean"):
            raise ValueError(f"kind must be 'max' or 'mean', got {kind!r}")
        self.kind = kind

    def forward(self, x: Tensor, keep: Tensor | None = None) -> Tensor:
        if keep is None:
            return x.amax(dim=2) if self.kind == "max" else x.mean(dim=2)
        keep = keep.view(-1, *[1] * (x.dim() - 3))  # [|G|, 1, ...] against [B, C, |G|, ...]
        if self.kind == "max":
            return x.masked_fill(keep == 0, float("-inf")).amax(dim=2)
        return (x * keep).sum(dim=2) / keep.sum()

    def extra_repr(self) -> str:
        return self.kind


class GlobalAvgPool(nn.Module):
    """Mean over the plane: [B, C, (|G|,) H, W] -> [B, C(, |G|)]. Exact for any size: it has no grid."""

    def forward(self, x: Tensor) -> Tensor:
        return x.mean(dim=(-2, -1))
