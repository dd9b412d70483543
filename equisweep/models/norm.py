"""Batch normalisation for group feature maps."""

from __future__ import annotations

from torch import Tensor, nn


class GroupBatchNorm(nn.BatchNorm3d):
    """Batch norm with one mean, variance, scale and shift per channel, shared over the group axis and the plane.

    in/out [B, C, |G|, H, W]; commutes with every group element (the statistics are invariant under permuting
    the group axis and transforming the plane). No subsampling.
    """

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 5:
            raise ValueError(f"GroupBatchNorm expects [B, C, |G|, H, W], got {list(x.shape)}")
        return super().forward(x)
