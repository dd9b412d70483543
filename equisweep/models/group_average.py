"""Group averaging (symmetrisation): the mean of a backbone's logits over the group's turned copies of the input,

    f̄(x) = (1/|G|) Σ_{g∈G} f(g·x),

exactly invariant for *any* backbone at *any* input size, because quarter turns and mirrors of a square image
permute the |G| terms (Yarotsky, "Universal approximations of invariant maps by neural networks", 2018; frame
averaging with the whole group as frame, Puny et al., ICLR 2022). It repairs an approximate G-CNN: one averaged at
29 pixels is exact at 29, a third way beside adaptive subsampling and the size accident. One forward on a batch of
|G|·B images: |G| times the backbone's cost.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from equisweep.models.invariance import (
    GroupOptions,
    Inputs,
    Invariance,
    InvarianceWrapper,
    register_invariance,
    wrapper_group,
)


class GroupAveraged(InvarianceWrapper):
    """Images [B, C, N, N] -> the mean of ``backbone``'s logits over the ``group``-orbit of each image."""

    method = "average"

    def forward(self, x: Tensor) -> Tensor:
        orbit = torch.cat([self.group.act_on_image(g, x) for g in self.group.elements])  # [|G|·B, C, N, N]
        return self.backbone(orbit).unflatten(0, (self.group.order, x.shape[0])).mean(0)


def average(backbone: nn.Module, options: GroupOptions, inputs: Inputs) -> GroupAveraged:
    return GroupAveraged(backbone, wrapper_group(getattr(backbone, "group", None), options), options)


register_invariance(Invariance(
    "average", GroupOptions, average, exact=True,
    note="group averaging: the mean of the logits over every quarter turn (and mirror) of the input is invariant "
         "for any backbone at any size"))
