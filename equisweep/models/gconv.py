"""Lifting (Z2 -> G) and group (G -> G) convolutions for C_N/D_N groups that act on the pixel grid.

Both expand their base filter into a full filter bank by one gather through a precomputed index buffer
(the group action applied to ``arange``), then run **one** ``F.conv2d``: the cost is that of a plain conv with
the expanded shape plus a gather over the (small) weight tensor.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from equisweep.groups import Group, get_group


def check_geometry(kernel_size: int, stride: int, padding: int) -> None:
    for field, value, low in (("kernel_size", kernel_size, 1), ("stride", stride, 1), ("padding", padding, 0)):
        if not isinstance(value, int) or value < low:
            raise ValueError(f"{field} must be an int >= {low}, got {value!r}")


class _GroupConvBase(nn.Module):
    """Shared machinery: weight, shared bias, index buffer, one conv2d."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, group: Group | str,
                 in_order: int, stride: int = 1, padding: int = 0, bias: bool = True) -> None:
        super().__init__()
        check_geometry(kernel_size, stride, padding)
        self.group = get_group(group)
        if not self.group.acts_exactly_on_grid:
            raise ValueError(f"group {self.group.name!r} has rotations that are not pixel-grid symmetries; "
                             "use backend='e2cnn' for it")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        # Fan-in counts the group axis too: torch's init reads it from the weight's trailing dims.
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, in_order, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.register_buffer("filter_index", self._filter_index(in_order), persistent=False)
        self.reset_parameters()

    def _filter_index(self, in_order: int) -> Tensor:
        raise NotImplementedError

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.weight, nonlinearity="relu")
        if self.bias is not None:
            bound = 1 / math.sqrt(self.weight[0].numel())
            nn.init.uniform_(self.bias, -bound, bound)

    def expand(self, weight: Tensor) -> Tensor:
        """Move base filters [..., C_in, |G_in|, k, k] by every element: [..., |G|, C_in·|G_in|·k·k] (one gather)."""
        return weight.flatten(-4)[..., self.filter_index]

    def filter_bank(self) -> Tensor:
        """The expanded bank [C_out·|G|, C_in·|G_in|, k, k]; output slot h holds the filter moved by h."""
        bank = self.expand(self.weight)  # [C_out, |G|, C_in·|G_in|·k·k]
        return bank.reshape(self.out_channels * self.group.order, -1, self.kernel_size, self.kernel_size)

    def slot_bias(self) -> Tensor | None:
        """The bias of every output slot [C_out·|G|]: one value per channel, shared over the group axis."""
        return None if self.bias is None else self.bias.repeat_interleave(self.group.order)

    def forward(self, x: Tensor) -> Tensor:
        return self.convolve(x, self.filter_bank(), self.slot_bias())

    def convolve(self, x: Tensor, bank: Tensor, bias: Tensor | None) -> Tensor:
        """The layer's one ``F.conv2d`` with an expanded ``bank`` [C_out·|G|, C_in·|G_in|, k, k]."""
        x4 = self._as_planes(x)  # [B, C_in·|G_in|, H, W]
        y = F.conv2d(x4, bank, bias, self.stride, self.padding)
        return y.view(y.shape[0], self.out_channels, self.group.order, *y.shape[-2:])  # [B, C_out, |G|, H', W']

    def _as_planes(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, group={self.group.name}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, bias={self.bias is not None}")


class LiftingConv(_GroupConvBase):
    """Lifting convolution Z2 -> G.

    in [B, C_in, H, W] -> out [B, C_out, |G|, H', W'], H' = (H + 2p - k) // s + 1.
    g acts on the input plane and on the output by the regular representation; the layer commutes with every
    g when (H + 2p - k) % s == 0 on a square map, and only approximately otherwise.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, group: Group | str = "p4",
                 stride: int = 1, padding: int = 0, bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, kernel_size, group, 1, stride, padding, bias)

    def _filter_index(self, in_order: int) -> Tensor:
        k = self.kernel_size
        base = torch.arange(self.in_channels * k * k).view(self.in_channels, k, k)
        return torch.stack([self.group.act_on_image(h, base).reshape(-1) for h in self.group.elements])

    def _as_planes(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"LiftingConv expects [B, {self.in_channels}, H, W], got {list(x.shape)}")
        return x


class GroupConv(_GroupConvBase):
    """Group convolution G -> G.

    in [B, C_in, |G|, H, W] -> out [B, C_out, |G|, H', W'], H' = (H + 2p - k) // s + 1.
    g acts on both by the regular representation (plane transformed, group axis permuted). Commutes with every
    g when (H + 2p - k) % s == 0 on a square map; otherwise only approximately.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, group: Group | str = "p4",
                 stride: int = 1, padding: int = 0, bias: bool = True) -> None:
        order = get_group(group).order
        super().__init__(in_channels, out_channels, kernel_size, group, order, stride, padding, bias)

    def _filter_index(self, in_order: int) -> Tensor:
        k = self.kernel_size
        base = torch.arange(self.in_channels * in_order * k * k).view(self.in_channels, in_order, k, k)
        return torch.stack([self.group.act_on_map(h, base).reshape(-1) for h in self.group.elements])

    def _as_planes(self, x: Tensor) -> Tensor:
        if x.dim() != 5 or x.shape[1] != self.in_channels or x.shape[2] != self.group.order:
            raise ValueError(f"GroupConv expects [B, {self.in_channels}, {self.group.order}, H, W], "
                             f"got {list(x.shape)}")
        return x.flatten(1, 2)
