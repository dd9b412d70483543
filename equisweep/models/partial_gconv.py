"""Partial group convolution: each layer learns which group elements its output keeps.

Romero & Lohit, "Learning Partial Equivariances from Data", NeurIPS 2022 (arXiv 2110.10211), in its form for a
discrete group: one keep-logit per non-identity element (the identity is always kept).

* Training: each element is kept with a relaxed Bernoulli sample (Gumbel-sigmoid at ``temperature``) that is
  hard-thresholded at 0.5 with a straight-through gradient, ``hard − soft.detach() + soft``.
* Evaluation: deterministic, an element is kept iff its keep-probability sigmoid(logit) exceeds 0.5.

Placement of the mask: it multiplies the output slots of the filter bank and of the bias, so a dropped slot of
the conv output is exactly zero while shapes stay static, and there is still one ``F.conv2d``. The norm and
ReLU that follow may refill a dropped slot only with a per-channel constant (the input reaches it through batch
statistics alone), and a residual sum adds its shortcut there; the classifier head pools over the kept slots
only (``MaskedClassifierHead``, fed by the last partial layer).
The layer keeps the mask of its latest forward, detached, in ``last_mask`` for that head: the gradient of the
mask flows through the filter bank.

The logits start at ``logit(keep_init)`` with ``keep_init`` above 0.5 but well below 1: evaluation keeps every element
(exact), and training drops an element with probability 1 − keep_init per step, often enough for the network to
learn what a dropped element changes, and far enough from saturation for the straight-through gradient
(``soft·(1 − soft)/temperature``) to reach the logits. As in the method, the temperature is annealed linearly over
training (``temperature_start`` to ``temperature_end``, the record's ``anneal``) and the logits train at their own
learning rate (``lr_probs``, without weight decay: the record's ``param_groups``).

Registered as the relaxation ``partial``; options ``lambda`` (the weight of the penalty against a deeper layer keeping
more of the group than a shallower one), ``keep_init``, ``temperature_start``, ``temperature_end``, ``lr_probs``.
"""

from __future__ import annotations

import itertools
import math

import torch
from pydantic import Field
from torch import Tensor, nn

from equisweep.groups import Group
from equisweep.models.gconv import GroupConv, LiftingConv
from equisweep.models.heads import ClassifierHead
from equisweep.models.pooling import GroupPool
from equisweep.models.relaxation import (
    Relaxation,
    RelaxationOptions,
    RelaxedLayerSet,
    penalty_sum,
    register_relaxation,
)

KEEP_INIT = 0.8  # initial keep-probability of every non-identity element
TEMPERATURE = 0.5  # initial Gumbel-sigmoid temperature (the method anneals it from 0.5 to 1e-4)


class PartialMixin:
    """Mixin over ``LiftingConv``/``GroupConv``: masks output slots by a sampled subset of the group."""

    relaxed_by_construction = True

    def __init__(self, *args, temperature: float = TEMPERATURE, keep_init: float = KEEP_INIT, **kwargs) -> None:
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        if not 0.5 < keep_init < 1:
            raise ValueError(f"keep_init must lie in (0.5, 1) for an exact, trainable start, got {keep_init!r}")
        self.keep_init = keep_init
        super().__init__(*args, **kwargs)
        self.temperature = temperature
        self.generator: torch.Generator | None = None  # set one to make training samples reproducible
        self.keep_logits = nn.Parameter(torch.empty(self.group.order - 1))  # one per non-identity element
        self.last_mask: Tensor | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if hasattr(self, "keep_logits"):  # the base constructor calls this before the logits exist
            nn.init.constant_(self.keep_logits, math.log(self.keep_init / (1 - self.keep_init)))

    def keep_probabilities(self) -> Tensor:
        """p [|G|]: the identity's 1, then sigmoid of each logit."""
        return torch.cat([self.keep_logits.new_ones(1), torch.sigmoid(self.keep_logits)])

    def sample_mask(self) -> Tensor:
        """m [|G|] in {0, 1}: sampled with a straight-through gradient in training, thresholded in evaluation."""
        logits = self.keep_logits
        if self.training:
            u = torch.rand(logits.shape, generator=self.generator, device=logits.device, dtype=logits.dtype)
            soft = torch.sigmoid((logits + torch.log(u) - torch.log1p(-u)) / self.temperature)  # logistic noise
            kept = (soft > 0.5).to(soft.dtype) - soft.detach() + soft
        else:
            kept = (logits > 0).to(logits.dtype)  # sigmoid(logit) > 0.5
        return torch.cat([logits.new_ones(1), kept])

    def forward(self, x: Tensor) -> Tensor:
        mask = self.sample_mask()
        self.last_mask = mask.detach()
        scale = mask.repeat(self.out_channels)  # [C_out·|G|]: bank rows are channel-major, slot-minor
        bias = self.slot_bias()
        return self.convolve(x, self.filter_bank() * scale[:, None, None, None], None if bias is None else bias * scale)

    def departure(self) -> float:
        """Fraction of group elements the evaluation mask drops; 0 while all are kept (exact)."""
        return float((self.keep_logits.detach() <= 0).sum() / self.group.order)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, temperature={self.temperature}"


class PartialLiftingConv(PartialMixin, LiftingConv):
    """Partial lifting convolution Z2 -> G: in [B, C_in, H, W] -> out [B, C_out, |G|, H', W'], dropped slots 0.

    g acts on the input plane and on the output by the regular representation; exactly equivariant when every
    element is kept and (H + 2p - k) % s == 0 on a square map; otherwise only for the elements g with gS = S.
    """


class PartialGroupConv(PartialMixin, GroupConv):
    """Partial group convolution G -> G: in [B, C_in, |G|, H, W] -> out [B, C_out, |G|, H', W'], dropped slots 0.

    g acts on both by the regular representation; exactly equivariant when every element is kept and
    (H + 2p - k) % s == 0 on a square map; otherwise only for the elements g with gS = S.
    """


class MaskedClassifierHead(ClassifierHead):
    """A ``ClassifierHead`` whose group pooling averages over the slots that ``source`` kept in this forward.

    The mean, as the method defines it, not the exact nets' max: under a max, dropping an element changes the
    output only where its slot held a channel's maximum, so the network could hardly use (and the keep-logits
    hardly learn from) a dropped element; measured on the knight experiment, a max head stayed invariant even with
    an element dropped, and a mean head learns it. ``source`` is the partial layer whose output reaches the head
    (the last one of the network); it is held outside the module tree so its parameters are not registered twice.
    """

    def __init__(self, source: PartialMixin, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.group_pool = GroupPool("mean")
        self._source = (source,)

    def forward(self, x: Tensor) -> Tensor:
        keep = self._source[0].last_mask
        if keep is None:
            raise RuntimeError("MaskedClassifierHead: its partial layer has not run yet")
        return super().forward(x, keep)


class PartialLayerSet(RelaxedLayerSet):
    """Partial lifting and group convs, and a head that pools over the group elements kept by the last partial conv
    this set built (the one whose output reaches the head in our architectures, which build their head last)."""

    def __init__(self, group: Group, subsampling: str = "stride", **layer_options: float) -> None:
        super().__init__(group, PartialLiftingConv, PartialGroupConv, subsampling, **layer_options)
        self.last_conv: PartialMixin | None = None

    def make_lift(self, cin: int, cout: int, kernel: int, stride: int, padding: int, bias: bool) -> nn.Module:
        self.last_conv = super().make_lift(cin, cout, kernel, stride, padding, bias)
        return self.last_conv

    def make_conv(self, cin: int, cout: int, kernel: int, stride: int, padding: int, bias: bool) -> nn.Module:
        self.last_conv = super().make_conv(cin, cout, kernel, stride, padding, bias)
        return self.last_conv

    def head(self, kind: str, channels: int, num_classes: int, pool_group_first: bool = True) -> nn.Module:
        if self.last_conv is None:
            raise ValueError("a partial head needs a partial conv built before it")
        return MaskedClassifierHead(self.last_conv, kind, channels, self.group.order, num_classes, pool_group_first)


class PartialOptions(RelaxationOptions):
    # the weight of the monotonicity penalty (the paper's rotated-MNIST value); "lambda" in settings
    lambda_: float = Field(1e-3, ge=0, alias="lambda")
    keep_init: float = Field(KEEP_INIT, gt=0.5, lt=1)  # the initial keep-probability: above 0.5 is exact
    temperature_start: float = Field(TEMPERATURE, gt=0)  # the Gumbel temperature, annealed linearly from start ...
    temperature_end: float = Field(1e-4, gt=0)  # ... to end over training (the method's values)
    lr_probs: float = Field(0.02, gt=0)  # the keep-logits' learning rate


def partial_layers(group: Group, options: PartialOptions, subsampling: str) -> PartialLayerSet:
    return PartialLayerSet(group, subsampling, temperature=options.temperature_start, keep_init=options.keep_init)


def anneal_temperature(model: nn.Module, options: PartialOptions, progress: float) -> None:
    """Set every partial layer's temperature to its linear schedule at ``progress`` (0 to 1) of training."""
    temperature = options.temperature_start + (options.temperature_end - options.temperature_start) * progress
    for layer in model.modules():
        if isinstance(layer, PartialMixin):
            layer.temperature = temperature


def logit_param_groups(options: PartialOptions) -> dict[str, dict[str, float]]:
    """The keep-logits' optimiser settings: their own learning rate, and no weight decay (it would pull every
    logit towards 0, the threshold of exactness)."""
    return {"keep_logits": {"lr": options.lr_probs, "weight_decay": 0.0}}


def monotone_penalty(model: nn.Module, options: PartialOptions) -> Tensor:
    """``lambda · Σ_l relu(p_{l+1} − p_l)`` with p_l a layer's mean keep-probability, layers in ``model.modules()``
    order (depth order in our architectures; a shortcut conv comes after its block's convs), so a deeper layer pays
    for keeping more than a shallower one."""
    keep = [layer.keep_probabilities().mean() for layer in model.modules() if isinstance(layer, PartialMixin)]
    steps = [torch.relu(deeper - shallower) for shallower, deeper in itertools.pairwise(keep)]
    return options.lambda_ * penalty_sum(model, steps)


register_relaxation(Relaxation("partial", PartialOptions, partial_layers, monotone_penalty,
                               param_groups=logit_param_groups, anneal=anneal_temperature))
