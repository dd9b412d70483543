"""One set of layer constructors per (group, backend), so each architecture is written once.

A model asks its ``LayerSet`` for a lifting conv, a hidden conv, a norm, a pool and a head; the Z2 set returns
plain ``nn.Conv2d``/``nn.BatchNorm2d`` on 4-D maps, the group set our p4/p4m layers on 5-D maps, and the e2cnn
set (``e2cnn_backend``) e2cnn convolutions wrapped to the same 5-D layout. With ``subsampling="adaptive"`` every
stride-2 conv and pool comes as the same layer at stride 1 followed by an ``AdaptiveSubsample`` (``subsampling.py``),
which makes the network exact at every input size; subclasses that swap the conv type override ``make_lift`` and
``make_conv`` and get this for free.
"""

from __future__ import annotations

from torch import nn

from equisweep.groups import Group
from equisweep.models.gconv import GroupConv, LiftingConv
from equisweep.models.heads import ClassifierHead
from equisweep.models.norm import GroupBatchNorm
from equisweep.models.pooling import SpatialPool
from equisweep.models.subsampling import SUBSAMPLINGS, AdaptiveStride


class LayerSet:
    """Native layers for ``group``: plain convs for the trivial group, lifting/group convs otherwise."""

    def __init__(self, group: Group, subsampling: str = "stride") -> None:
        if subsampling not in SUBSAMPLINGS:
            raise ValueError(f"subsampling must be one of {', '.join(SUBSAMPLINGS)}, got {subsampling!r}")
        self.group, self.subsampling = group, subsampling

    @property
    def is_trivial(self) -> bool:
        return self.group.order == 1

    def lift(self, cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0,
             bias: bool = False) -> nn.Module:
        if self._adaptive(stride):
            return AdaptiveStride(self.make_lift(cin, cout, kernel, 1, padding, bias))
        return self.make_lift(cin, cout, kernel, stride, padding, bias)

    def conv(self, cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0,
             bias: bool = False) -> nn.Module:
        if self._adaptive(stride):
            return AdaptiveStride(self.make_conv(cin, cout, kernel, 1, padding, bias))
        return self.make_conv(cin, cout, kernel, stride, padding, bias)

    def make_lift(self, cin: int, cout: int, kernel: int, stride: int, padding: int, bias: bool) -> nn.Module:
        """The lifting conv itself, at the stride given."""
        if self.is_trivial:
            return nn.Conv2d(cin, cout, kernel, stride, padding, bias=bias)
        return LiftingConv(cin, cout, kernel, self.group, stride, padding, bias)

    def make_conv(self, cin: int, cout: int, kernel: int, stride: int, padding: int, bias: bool) -> nn.Module:
        """The hidden conv itself, at the stride given."""
        if self.is_trivial:
            return nn.Conv2d(cin, cout, kernel, stride, padding, bias=bias)
        return GroupConv(cin, cout, kernel, self.group, stride, padding, bias)

    def norm(self, channels: int) -> nn.Module:
        return nn.BatchNorm2d(channels) if self.is_trivial else GroupBatchNorm(channels)

    def pool(self, kind: str, kernel: int, stride: int | None = None, padding: int = 0) -> nn.Module:
        if self._adaptive(stride or kernel):
            return AdaptiveStride(SpatialPool(kind, kernel, 1, padding))
        return SpatialPool(kind, kernel, stride, padding)

    def head(self, kind: str, channels: int, num_classes: int, pool_group_first: bool = True) -> nn.Module:
        return ClassifierHead(kind, channels, self.group.order, num_classes, pool_group_first)

    def _adaptive(self, stride: int) -> bool:
        """Whether a layer of this stride is built at stride 1 and subsampled adaptively."""
        if self.subsampling != "adaptive" or stride == 1:
            return False
        if stride != 2:
            raise ValueError(f"adaptive subsampling handles stride 2, got stride {stride}")
        return True
