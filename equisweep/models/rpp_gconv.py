"""Residual pathway prior group convolution: the exact filter bank plus an unconstrained one.

Finzi, Benton, Wilson, "Residual Pathway Priors for Soft Equivariance Constraints", NeurIPS 2021
(arXiv 2112.01388).

The effective bank is ``expand(θ) + W_free``, with ``W_free`` of the expanded shape [C_out·|G|, C_in·|G_in|, k, k].
The conv is linear, so summing the two banks before the one ``F.conv2d`` equals summing two pathways. The prior
(θ ~ N(0, σ_eq²), W_free ~ N(0, σ_free²), σ_free ≪ σ_eq) becomes the L2 penalty
``free_wd·||W_free||² + equiv_wd·||θ||²``; as ``free_wd`` grows the layer tends to exact. W_free starts at zero
(the paper starts it small and random), so the layer is exact at initialisation; it receives the whole kernel's
gradient, so it still learns. It breaks the group symmetry but keeps translation equivariance.

Registered as the relaxation ``rpp`` (options ``free_wd`` and ``equiv_wd``, the two weights of the penalty).
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


class RPPMixin:
    """Mixin over ``LiftingConv``/``GroupConv``: adds the free bank to the exact one."""

    relaxed_by_construction = True

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.free = nn.Parameter(torch.zeros_like(super().filter_bank()))  # W_free [C_out·|G|, C_in·|G_in|, k, k]

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if hasattr(self, "free"):  # the base constructor calls this before the free bank exists
            nn.init.zeros_(self.free)

    def filter_bank(self) -> Tensor:
        return super().filter_bank() + self.free

    def departure(self) -> float:
        """||W_free|| / ||expand(θ)||; 0 while the free bank is zero (exact)."""
        exact = super().filter_bank().detach()
        return float(self.free.detach().norm() / exact.norm().clamp_min(torch.finfo(exact.dtype).tiny))


class RPPLiftingConv(RPPMixin, LiftingConv):
    """RPP lifting convolution Z2 -> G: in [B, C_in, H, W] -> out [B, C_out, |G|, H', W'].

    g acts on the input plane and on the output by the regular representation; exactly equivariant when
    W_free = 0 and (H + 2p - k) % s == 0 on a square map, approximately otherwise.
    """


class RPPGroupConv(RPPMixin, GroupConv):
    """RPP group convolution G -> G: in [B, C_in, |G|, H, W] -> out [B, C_out, |G|, H', W'].

    g acts on both by the regular representation; exactly equivariant when W_free = 0 and
    (H + 2p - k) % s == 0 on a square map, approximately otherwise.
    """


class RPPOptions(RelaxationOptions):
    free_wd: float = Field(1.0, ge=0)  # L2 on the free bank W_free
    equiv_wd: float = Field(1e-5, ge=0)  # L2 on the equivariant base filters θ


def rpp_layers(group: Group, options: RPPOptions, subsampling: str) -> RelaxedLayerSet:
    return RelaxedLayerSet(group, RPPLiftingConv, RPPGroupConv, subsampling)


def prior_penalty(model: nn.Module, options: RPPOptions) -> Tensor:
    """``Σ_layers free_wd·||W_free||² + equiv_wd·||θ||²``: the first part is zero at initialisation, the second is
    weight decay on the equivariant path."""
    layers = [layer for layer in model.modules() if isinstance(layer, RPPMixin)]
    return penalty_sum(model, (options.free_wd * layer.free.square().sum()
                               + options.equiv_wd * layer.weight.square().sum() for layer in layers))


register_relaxation(Relaxation("rpp", RPPOptions, rpp_layers, prior_penalty))
