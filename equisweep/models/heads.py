"""Classifier heads: the invariant coset head and the paper's non-invariant flatten head."""

from __future__ import annotations

from typing import Literal, get_args

from torch import Tensor, nn

from equisweep.models.pooling import GlobalAvgPool, GroupPool

Head = Literal["coset", "flatten"]
HEADS = get_args(Head)


class ClassifierHead(nn.Module):
    """Feature map -> logits [B, num_classes].

    ``coset``: max over the group axis and mean over the plane, then a linear layer on C features. Invariant:
    every group element gives the same logits (exactly, when the map is exactly equivariant). ``pool_group_first``
    chooses the order (the paper's ResNets take the group max first, its P4CNN the spatial mean first).
    ``flatten``: mean over the plane, then a linear layer on all C·|G| features, so rotating the input permutes
    the features the linear layer sees: equivariant features, a head that is not invariant.
    Z2 maps [B, C, H, W] have no group axis and both kinds reduce to mean-then-linear.
    ``keep`` [|G|] (0/1) limits both to the kept group slots: the coset max runs over them only, and the
    flatten head sees dropped slots as zero features.
    """

    def __init__(self, kind: Head, channels: int, group_order: int, num_classes: int,
                 pool_group_first: bool = True) -> None:
        super().__init__()
        if kind not in HEADS:
            raise ValueError(f"head must be one of {', '.join(HEADS)}, got {kind!r}")
        self.kind, self.group_order, self.pool_group_first = kind, group_order, pool_group_first
        self.spatial = GlobalAvgPool()
        self.group_pool = GroupPool("max")
        features = channels * group_order if kind == "flatten" else channels
        self.linear = nn.Linear(features, num_classes)

    def forward(self, x: Tensor, keep: Tensor | None = None) -> Tensor:
        if x.dim() == 4:  # Z2 map [B, C, H, W]
            return self.linear(self.spatial(x))
        if self.kind == "flatten":
            features = self.spatial(x) if keep is None else self.spatial(x) * keep  # [B, C, |G|]
            return self.linear(features.flatten(1))  # [B, C·|G|]
        if self.pool_group_first:
            return self.linear(self.spatial(self.group_pool(x, keep)))
        return self.linear(self.group_pool(self.spatial(x), keep))  # [B, C, |G|] -> [B, C]
