"""Relaxed group convolution: L filter banks mixed by weights that depend on the output group element.

Wang, Walters, Yu, "Approximately Equivariant Networks for Imperfectly Symmetric Dynamics", ICML 2022
(arXiv 2201.11969); the equal initialisation follows Wang, Hofgard, Gao, Walters, Smidt, ICML 2024.

With banks Ψ_l (l = 1..L) and relaxed weights w[g, l], the kernel of output slot g is

    W_g = Σ_l w[g, l] · (g acting on Ψ_l)

This implementation indexes w by the *output* element g (the paper writes w_l(h) on the input element; both
are exact when w is constant). If w[g, l] = c_l for every g, then W is the exact expansion of Σ_l c_l Ψ_l, so
the layer is exactly equivariant; only the variation of w over g breaks the symmetry. w starts at ones and the
banks at the exact layer's He init divided by √L, so a fresh layer is exact with the exact layer's scale.

Registered as the relaxation ``relaxed`` (options ``banks``, L; ``alpha``, the weight of the tie penalty).

The bank is built mixing first: Φ_g = Σ_l w[g, l] Ψ_l (one small matmul), then slot g reads Φ_g through the
exact layer's index for g (one gather), which costs one gather of the expanded size instead of L.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor, nn

from equisweep.groups import Group
from equisweep.models.gconv import GroupConv, LiftingConv
from equisweep.models.relaxation import (
    Relaxation,
    RelaxationOptions,
    RelaxedLayerSet,
    penalty_sum,
    register_relaxation,
)


class RelaxedMixin:
    """Mixin over ``LiftingConv``/``GroupConv``: the base weight holds L banks stacked on the output axis."""

    relaxed_by_construction = True

    def __init__(self, *args, banks: int = 2, **kwargs) -> None:
        if not isinstance(banks, int) or banks < 1:
            raise ValueError(f"banks must be an int >= 1, got {banks!r}")
        super().__init__(*args, **kwargs)
        self.banks = banks
        # [L·C_out, C_in, |G_in|, k, k]: torch's He init reads the fan-in from the trailing dims, per bank
        self.weight = nn.Parameter(self.weight.new_empty(banks * self.out_channels, *self.weight.shape[1:]))
        self.relaxed_weights = nn.Parameter(torch.ones(self.group.order, banks))  # w[g, l]
        # The exact index with row g shifted to read the g-th mixture Φ_g in [C_out, |G|·n], n = C_in·|G_in|·k·k
        shift = self.weight[0].numel() * torch.arange(self.group.order).unsqueeze(1)
        self.register_buffer("slot_index", self.filter_index + shift, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if hasattr(self, "relaxed_weights"):  # the base constructor calls this before the banks exist
            with torch.no_grad():
                self.weight.mul_(self.banks ** -0.5)
                self.relaxed_weights.fill_(1.0)

    def filter_bank(self) -> Tensor:
        order, c_out, k = self.group.order, self.out_channels, self.kernel_size
        mixed = self.relaxed_weights @ self.weight.view(self.banks, -1)  # Φ [|G|, C_out·n]
        mixed = mixed.view(order, c_out, -1).transpose(0, 1).reshape(c_out, -1)  # [C_out, |G|·n]
        bank = mixed[:, self.slot_index]  # [C_out, |G|, D]: slot g holds Φ_g moved by g
        return bank.reshape(c_out * order, -1, k, k)

    def tie_penalty(self) -> Tensor:
        """Σ_l Σ_{g,h} |w[g, l] − w[h, l]| over ordered pairs: zero exactly when the layer is equivariant."""
        w = self.relaxed_weights
        return (w[:, None, :] - w[None, :, :]).abs().sum()

    def departure(self) -> float:
        """max_l (max_g − min_g) w[g, l], relative to mean |w|; 0 while tied (exact)."""
        w = self.relaxed_weights.detach()
        spread = (w.amax(dim=0) - w.amin(dim=0)).max()
        return float(spread / w.abs().mean().clamp_min(torch.finfo(w.dtype).tiny))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, banks={self.banks}"


class RelaxedLiftingConv(RelaxedMixin, LiftingConv):
    """Relaxed lifting convolution Z2 -> G: in [B, C_in, H, W] -> out [B, C_out, |G|, H', W'].

    g acts on the input plane and on the output by the regular representation; exactly equivariant when the
    relaxed weights are constant over g and (H + 2p - k) % s == 0 on a square map, approximately otherwise.
    """


class RelaxedGroupConv(RelaxedMixin, GroupConv):
    """Relaxed group convolution G -> G: in [B, C_in, |G|, H, W] -> out [B, C_out, |G|, H', W'].

    g acts on both by the regular representation; exactly equivariant when the relaxed weights are constant
    over g and (H + 2p - k) % s == 0 on a square map, approximately otherwise.
    """


class RelaxedOptions(RelaxationOptions):
    banks: int = Field(2, ge=1)  # L, the number of filter banks of each relaxed conv
    alpha: float = Field(1e-4, ge=0)  # weight of the tie penalty


def relaxed_layers(group: Group, options: RelaxedOptions, subsampling: str) -> RelaxedLayerSet:
    return RelaxedLayerSet(group, RelaxedLiftingConv, RelaxedGroupConv, subsampling, banks=options.banks)


def tie_penalty(model: nn.Module, options: RelaxedOptions) -> Tensor:
    """``alpha · Σ_layers Σ_l Σ_{g,h} |w[g, l] − w[h, l]|`` (ordered pairs): zero while every layer is tied."""
    return options.alpha * penalty_sum(model, (layer.tie_penalty() for layer in model.modules()
                                               if isinstance(layer, RelaxedMixin)))


register_relaxation(Relaxation("relaxed", RelaxedOptions, relaxed_layers, tie_penalty))
