"""Adaptive subsampling: stride 2 on a grid that moves with the input, so a network is exact at every input size.

A stride-2 conv or pool samples the grid {0, 2, 4, ...} of the stride-1 map it would compute. On a map of odd
side M that grid is symmetric about the centre, and a rotation or mirror of the map keeps it; on an even side it
is one of four polyphase components ``y[..., a::2, b::2]``, and a quarter turn or mirror of the map moves it onto
another ((a, b) -> (b, 1 - a) under a quarter turn, (a, 1 - b) under a mirror of the columns): plain stride 2 is
then only approximately equivariant. ``AdaptiveStride`` computes the op at stride 1 (still exact: its windows are
symmetric at every size) and ``AdaptiveSubsample`` keeps

* the centred grid ``[::2]`` along an axis of odd length (exactly what stride 2 keeps there);
* along an even axis, the polyphase component of largest norm over channels, group axis and plane, per sample.
  That norm is invariant under the group (it permutes the group axis and moves the plane), so a rotated or
  mirrored input picks the rotated or mirrored component: adaptive polyphase sampling (Chaman & Dokmanić,
  CVPR 2021) made group-aware, in the spirit of the G-subsampling of Xu et al. (NeurIPS 2021).

Ties go to the first component in the order (0, 0), (0, 1), (1, 0), (1, 1), the one stride 2 keeps: a map whose
components have equal norms (e.g. all zero) is sampled as stride 2 samples it. Where every stride-1 map has an odd
side, the network computes what the strided one computes. A residual shortcut must sample the grid its block's
main path sampled, or the sum would add features of different pixels: ``follow`` makes one subsample reuse
another's choice.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

SUBSAMPLINGS = ("stride", "adaptive")


class AdaptiveSubsample(nn.Module):
    """Subsample by 2 on the grid that follows the input: in [B, ..., H, W] -> out [B, ..., ceil(H/2), ceil(W/2)].

    ``chosen`` holds the latest choice for a subsample that ``follow``s this one: the component per sample, [B]
    (index into (0, 0), (0, 1), (1, 0), (1, 1) over the even axes), with the (batch, H, W) it was made for; the
    follower takes it once and clears it, so a stale choice is never reused.
    """

    exact_at_any_size = True  # read by the static exactness check: this sampling commutes with the group at any size

    def __init__(self) -> None:
        super().__init__()
        self.leader: list[AdaptiveSubsample] = []  # a list keeps the leader out of this module's children
        self.chosen: tuple[Tensor, tuple[int, int, int]] | None = None

    def follow(self, leader: AdaptiveSubsample) -> None:
        """Sample the grid ``leader`` chose in the same forward (``leader`` must run first)."""
        self.leader = [leader]

    def forward(self, x: Tensor) -> Tensor:
        planes = x.flatten(1, -3)  # [B, P, H, W]
        components = self._components(planes)  # [B, K, P, h, w]
        if self.leader:
            phase, grid = self.leader[0].chosen or (None, None)
            if grid != (x.shape[0], *x.shape[-2:]):
                raise RuntimeError("AdaptiveSubsample: the subsample it follows has not sampled a map of this batch "
                                   "and size in this forward; run that one first")
            self.leader[0].chosen = None
        else:
            phase = components.square().sum(dim=(2, 3, 4)).argmax(dim=1)  # the first largest on a tie
            self.chosen = (phase, (x.shape[0], *x.shape[-2:]))
        kept = components[torch.arange(x.shape[0], device=x.device), phase]  # [B, P, h, w]
        return kept.view(*x.shape[:-2], *kept.shape[-2:])

    @staticmethod
    def _components(planes: Tensor) -> Tensor:
        """[B, P, H, W] -> [B, K, P, h, w]: the candidate grids, K = 1, 2 or 4 as 0, 1 or 2 axes are even."""
        b, p, h, w = planes.shape
        rows = planes[:, :, ::2].unsqueeze(1) if h % 2 else planes.reshape(b, p, h // 2, 2, w).permute(0, 3, 1, 2, 4)
        k = rows.shape[1]
        if w % 2:
            both = rows[..., ::2].unsqueeze(2)
        else:
            both = rows.reshape(b, k, p, rows.shape[3], w // 2, 2).permute(0, 1, 5, 2, 3, 4)
        return both.flatten(1, 2)


class AdaptiveStride(nn.Module):
    """A stride-2 conv or pool made exact at any size: ``op`` (the same layer at stride 1), then ``AdaptiveSubsample``.

    Its output has the strided layer's shape, and equals it wherever the stride-1 map has an odd side.
    """

    def __init__(self, op: nn.Module) -> None:
        super().__init__()
        self.op = op
        self.subsample = AdaptiveSubsample()

    def forward(self, x: Tensor) -> Tensor:
        return self.subsample(self.op(x))


def share_grid(follower: nn.Module, leader: nn.Module) -> None:
    """Make ``follower`` (an ``AdaptiveStride``) sample the grid ``leader`` samples; nothing for strided layers.

    A residual block's shortcut and main path both subsample the block input: their grids must agree for the sum
    to add features of the same pixels. ``leader`` must run before ``follower`` in the forward.
    """
    if isinstance(follower, AdaptiveStride) and isinstance(leader, AdaptiveStride):
        follower.subsample.follow(leader.subsample)
