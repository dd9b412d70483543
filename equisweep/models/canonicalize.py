"""Canonicalisation: a small exactly equivariant network picks the orientation g* of each image, and the backbone
sees the image turned back, g*⁻¹·x (Kaba, Mondal, Zhang, Bengio, Ravanbakhsh, "Equivariance with Learned
Canonicalization Functions", ICML 2023; the identity prior of Mondal, Panigrahi, Kaba, Rajeswar, Ravanbakhsh,
"Equivariant Adaptation of Large Pretrained Models", NeurIPS 2023).

The scoring net is a 5x5 lifting conv and one pointwise group conv (to one channel) at stride 1 with centred zero
padding (exactly equivariant at any size), averaged over space but not over the group axis: one score per element,
s(x) ∈ R^|G|, with s(g·x) = s(x) permuted by g, so argmax s(g·x) = g·g* and the canonical image (g·g*)⁻¹·g·x = g*⁻¹·x
is the same for the whole orbit: the prediction is exactly invariant wherever the argmax is unique. On a tie the
first maximal element wins; ties that come from a symmetric image (g·x = x) turn it back to the same canonical image
anyway.

Training passes the hard canonical image forward and the gradient to the scores straight through the soft one,
x̃ = Σ_g (onehot_g + softmax(s/τ)_g − stopgrad(softmax(s/τ)_g)) · g⁻¹·x, whose value is exactly the hard image.
The prior adds β·CE(s(x), identity) on the training images, so upright data stays upright for the backbone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from equisweep.errors import UserError
from equisweep.groups import Group
from equisweep.models.invariance import (
    GroupOptions,
    Inputs,
    Invariance,
    InvarianceWrapper,
    register_invariance,
    wrapper_group,
)
from equisweep.models.layers import LayerSet

# Small: the scorer runs at full resolution, twice per step (the choice and the prior). A 5x5 lift sees a stroke's
# direction; a pointwise group conv mixes channels and the group axis at a fraction of a 3x3's cost.
LIFT_KERNEL, CONV_KERNEL = 5, 1


class CanonicalizeOptions(GroupOptions):
    beta: float = Field(1.0, ge=0, description="weight of the identity prior β·CE(scores, identity)")
    temperature: float = Field(1.0, gt=0, description="softmax temperature τ of the straight-through gradient")
    width: int = Field(4, ge=1, description="channels of the scoring net")


class OrientationScores(nn.Module):
    """Images [B, C, N, N] -> one score per group element [B, |G|], permuted by the group as the images turn."""

    def __init__(self, group: Group, in_channels: int, width: int) -> None:
        super().__init__()
        layers = LayerSet(group)
        self.lift = layers.make_lift(in_channels, width, LIFT_KERNEL, 1, LIFT_KERNEL // 2, True)
        self.conv = layers.make_conv(width, 1, CONV_KERNEL, 1, CONV_KERNEL // 2, True)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.relu(self.lift(x))).mean(dim=(1, 3, 4))  # [B, 1, |G|, H, W] -> [B, |G|]


class Canonicalized(InvarianceWrapper):
    """Images [B, C, N, N] -> ``backbone``'s logits of each image turned to its canonical orientation."""

    method = "canonicalize"

    def __init__(self, backbone: nn.Module, group: Group, in_channels: int, options: CanonicalizeOptions) -> None:
        super().__init__(backbone, group, options)
        self.scores = OrientationScores(group, in_channels, options.width)
        self.temperature = options.temperature

    def canonical(self, x: Tensor, scores: Tensor) -> Tensor:
        """Each image turned back by its chosen element: the hard choice forward, the soft one's gradient."""
        if x.shape[-1] != x.shape[-2]:
            raise UserError(f"invariance: canonicalize turns images by quarter turns, which needs a square image; got "
                            f"{x.shape[-2]}x{x.shape[-1]} (set a square input_size)")
        turned_back = torch.stack([self.group.act_on_image(self.group.inverse(g), x) for g in self.group.elements])
        soft = F.softmax(scores / self.temperature, dim=-1)
        hard = F.one_hot(scores.argmax(-1), self.group.order).to(soft.dtype)
        weights = hard + (soft - soft.detach())  # exactly the one-hot in value
        return torch.einsum("bg,gb...->b...", weights, turned_back)

    def forward(self, x: Tensor) -> Tensor:
        return self.backbone(self.canonical(x, self.scores(x)))


def canonicalize(backbone: nn.Module, options: CanonicalizeOptions, inputs: Inputs) -> Canonicalized:
    group = wrapper_group(getattr(backbone, "group", None), options)
    return Canonicalized(backbone, group, inputs.in_channels, options)


def identity_prior(net: Canonicalized, x: Tensor, options: CanonicalizeOptions) -> Tensor:
    """β·CE(s(x), identity): the scores pushed toward leaving the training images as they are."""
    scores = net.scores(x)
    return options.beta * F.cross_entropy(scores, scores.new_zeros(scores.shape[0], dtype=torch.long))


@torch.no_grad()
def choice_histogram(net: Canonicalized, x: Tensor) -> dict[str, float]:
    """The fraction of the images ``x`` turned back by each element."""
    chosen = net.scores(x).argmax(-1)
    counts = torch.bincount(chosen, minlength=net.group.order).double() / chosen.numel()
    return {f"chosen_{net.group.label(g)}": float(c) for g, c in zip(net.group.elements, counts)}


register_invariance(Invariance(
    "canonicalize", CanonicalizeOptions, canonicalize, exact=True,
    note="canonicalisation: an exactly equivariant scoring net picks the orientation, so every turned copy of an image "
         "reaches the backbone as the same canonical image (ties: the first maximal score)",
    loss=identity_prior, diagnostics=choice_histogram))
