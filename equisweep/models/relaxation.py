"""Relaxed equivariance as a model option: the layer set that swaps in relaxed convs, the training penalty, and
how far each relaxed layer has moved from exact.

Methods (each relaxes every lifting and group conv of a p4/p4m native model; ``none`` is the exact net):

* ``relaxed``: relaxed group convolution (Wang, Walters, Yu, ICML 2022), ``relaxed_gconv.py``;
* ``rpp``: residual pathway prior (Finzi, Benton, Wilson, NeurIPS 2021), ``rpp_gconv.py``;
* ``partial``: learned partial equivariance (Romero & Lohit, NeurIPS 2022), ``partial_gconv.py``.

Every method is exactly equivariant at initialisation. The penalty coefficients belong to training; their
defaults are the module constants below.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from equisweep.groups import Group
from equisweep.models.layers import LayerSet
from equisweep.models.partial_gconv import MaskedClassifierHead, PartialGroupConv, PartialLiftingConv, PartialMixin
from equisweep.models.relaxed_gconv import RelaxedGroupConv, RelaxedLiftingConv, RelaxedMixin
from equisweep.models.rpp_gconv import RPPGroupConv, RPPLiftingConv, RPPMixin

RELAXATIONS = ("none", "relaxed", "rpp", "partial")
RELAX_BANKS = 2  # L, the number of filter banks of a relaxed conv
RELAX_ALPHA = 1e-4  # relaxed: weight of Σ_l Σ_{g,h} |w[g,l] − w[h,l]|
RPP_FREE_WD = 1.0  # rpp: L2 on the free bank W_free
RPP_EQUIV_WD = 1e-5  # rpp: L2 on the equivariant base filters θ
PARTIAL_LAMBDA = 1e-3  # partial: weight of Σ_l relu(p_{l+1} − p_l) (the paper's rotated-MNIST value)

_CONVS = {"relaxed": (RelaxedLiftingConv, RelaxedGroupConv), "rpp": (RPPLiftingConv, RPPGroupConv),
          "partial": (PartialLiftingConv, PartialGroupConv)}


class RelaxedLayerSet(LayerSet):
    """Native p4/p4m layers whose lifting and group convs are relaxed by ``relaxation``.

    Norm, pooling and head are the exact ones, except that ``partial`` gets a head that pools over the group
    elements kept by the last partial conv this set built (the one whose output reaches the head in our
    architectures, which build their head last).
    """

    def __init__(self, group: Group, relaxation: str, banks: int = RELAX_BANKS, subsampling: str = "stride") -> None:
        if relaxation not in _CONVS:
            raise ValueError(f"relaxation must be one of {', '.join(_CONVS)}, got {relaxation!r}")
        if group.order == 1:
            raise ValueError(f"relaxation {relaxation!r} needs a group with more than one element, got {group.name}")
        super().__init__(group, subsampling)
        self.relaxation = relaxation
        self.lift_type, self.conv_type = _CONVS[relaxation]
        self.options = {"banks": banks} if relaxation == "relaxed" else {}
        self.last_conv: nn.Module | None = None

    def make_lift(self, cin: int, cout: int, kernel: int, stride: int, padding: int, bias: bool) -> nn.Module:
        self.last_conv = self.lift_type(cin, cout, kernel, self.group, stride, padding, bias, **self.options)
        return self.last_conv

    def make_conv(self, cin: int, cout: int, kernel: int, stride: int, padding: int, bias: bool) -> nn.Module:
        self.last_conv = self.conv_type(cin, cout, kernel, self.group, stride, padding, bias, **self.options)
        return self.last_conv

    def head(self, kind: str, channels: int, num_classes: int, pool_group_first: bool = True) -> nn.Module:
        if self.relaxation != "partial":
            return super().head(kind, channels, num_classes, pool_group_first)
        if self.last_conv is None:
            raise ValueError("a partial head needs a partial conv built before it")
        return MaskedClassifierHead(self.last_conv, kind, channels, self.group.order, num_classes, pool_group_first)


def relaxation_penalty(model: nn.Module, relax_alpha: float = RELAX_ALPHA, rpp_free_wd: float = RPP_FREE_WD,
                       rpp_equiv_wd: float = RPP_EQUIV_WD, partial_lambda: float = PARTIAL_LAMBDA) -> Tensor:
    """The term a relaxed model adds to its training loss (a 0-dim tensor; zero for a model with none).

    relaxed: ``relax_alpha · Σ_l Σ_{g,h} |w[g,l] − w[h,l]|`` per layer (ordered pairs). rpp:
    ``rpp_free_wd·||W_free||² + rpp_equiv_wd·||θ||²`` per layer; its first part is zero at initialisation, its
    second is weight decay on the equivariant path. partial: ``partial_lambda · Σ_l relu(p_{l+1} − p_l)`` with p_l
    a layer's mean keep-probability, layers in ``model.modules()`` order (depth order in our architectures; a
    shortcut conv comes after its block's convs), so a deeper layer pays for keeping more than a shallower one.
    """
    terms: list[Tensor] = []
    keep: list[Tensor] = []
    for module in model.modules():
        if isinstance(module, RelaxedMixin):
            terms.append(relax_alpha * module.tie_penalty())
        elif isinstance(module, RPPMixin):
            terms.append(rpp_free_wd * module.free.square().sum() + rpp_equiv_wd * module.weight.square().sum())
        elif isinstance(module, PartialMixin):
            keep.append(module.keep_probabilities().mean())
    if len(keep) > 1:
        p = torch.stack(keep)
        terms.append(partial_lambda * torch.relu(p[1:] - p[:-1]).sum())
    if terms:
        return torch.stack(terms).sum()
    param = next(iter(model.parameters()), None)
    return torch.zeros((), device=None if param is None else param.device, dtype=None if param is None else param.dtype)


def relaxation_diagnostics(model: nn.Module) -> dict[str, float]:
    """How far each relaxed layer has moved from exact, keyed by module name; 0 means exact (tied).

    relaxed: the largest spread over g of a bank's weight, relative to mean |w|; rpp: ||W_free|| / ||expand(θ)||;
    partial: the fraction of group elements its evaluation mask drops. Empty for a model without relaxed layers.
    """
    return {name: module.departure() for name, module in model.named_modules()
            if getattr(module, "relaxed_by_construction", False)}
