"""Augerino: a learned range of rotation angles (Benton, Finzi, Izmailov, Wilson, "Learning Invariances in Neural
Networks from Training Data", NeurIPS 2020).

The range is θ = π·sigmoid(ρ) radians, in (0, π) (a range beyond π turns no image further, and would let the
regulariser grow it for ever). In training each image is turned by t = θ·u, u ~ U[−1, 1], one draw per image, through
the differentiable bilinear rotation the datamodules use, so the gradient reaches θ; the loss adds −λ·θ², which
pushes toward *more* invariance while the data pushes back where it breaks the symmetry. At test the logits are the
mean over K angles θ·u_k, the midpoints u_k = (2k + 1)/K − 1 of K equal parts of [−1, 1]: the mean over the uniform
draw by the midpoint rule, the same every time it is asked. The range starts small (``init_range``, 10 degrees): the
data and the regulariser decide. Continuous, so never exactly C4-invariant except by chance: the static check leaves
it to the measurement (the orbit error and the Lie derivative).
"""

from __future__ import annotations

import math

import torch
from pydantic import Field
from torch import Tensor, nn

from equisweep.models.invariance import (
    Inputs,
    Invariance,
    InvarianceOptions,
    InvarianceWrapper,
    register_invariance,
    wrapper_group,
)
from equisweep.rotation import rotate_bilinear


class AugerinoOptions(InvarianceOptions):
    init_range: float = Field(10.0, gt=0, lt=180, description="the starting range θ in degrees (0 < θ < 180)")
    reg: float = Field(0.01, ge=0, description="λ of the regulariser −λ·θ² (θ in radians) toward invariance")
    samples: int = Field(8, ge=1, description="K: angles averaged at test")


class Augerino(InvarianceWrapper):
    """Images [B, C, N, N] -> ``backbone``'s logits of the images turned within the learned range: one random angle
    per image in training, the mean over ``samples`` fixed angles at test."""

    method = "augerino"

    def __init__(self, backbone: nn.Module, options: AugerinoOptions, background: float | tuple[float, ...]) -> None:
        super().__init__(backbone, wrapper_group(getattr(backbone, "group", None), options), options)
        fraction = options.init_range / 180
        self.range_logit = nn.Parameter(torch.tensor(math.log(fraction / (1 - fraction))))
        self.samples = options.samples
        self.register_buffer("background", torch.tensor(background, dtype=torch.float32).reshape(-1),
                             persistent=False)

    @property
    def range(self) -> Tensor:
        """θ in radians."""
        return math.pi * torch.sigmoid(self.range_logit)

    def forward(self, x: Tensor) -> Tensor:
        batch = x.shape[0]
        if self.training:
            draws = torch.rand(batch, dtype=x.dtype, device=x.device) * 2 - 1
            return self.backbone(self._turn(x, draws))
        draws = (2 * torch.arange(self.samples, dtype=x.dtype, device=x.device) + 1) / self.samples - 1
        turned = self._turn(x.repeat(self.samples, 1, 1, 1), draws.repeat_interleave(batch))
        return self.backbone(turned).unflatten(0, (self.samples, batch)).mean(0)

    def _turn(self, x: Tensor, draws: Tensor) -> Tensor:
        return rotate_bilinear(x, torch.rad2deg(self.range.to(x.dtype) * draws), self.background.to(x.dtype))


def augerino(backbone: nn.Module, options: AugerinoOptions, inputs: Inputs) -> Augerino:
    return Augerino(backbone, options, inputs.background)


def toward_invariance(net: Augerino, x: Tensor, options: AugerinoOptions) -> Tensor:
    """−λ·θ²: the regulariser that widens the range."""
    return -options.reg * net.range.pow(2)


def learned_range(net: Augerino, x: Tensor) -> dict[str, float]:
    return {"range_deg": float(torch.rad2deg(net.range))}


register_invariance(Invariance(
    "augerino", AugerinoOptions, augerino, exact=None,
    note="augerino: a learned continuous range of rotations, invariant only by chance; measured only",
    loss=toward_invariance, diagnostics=learned_range))
