"""Soft equivariance: a penalty on the network's change under the group, added to the training loss.

    loss = CE + λ · E_x ‖softmax f(g·x) − softmax f(x)‖²            (``orbit``)
    loss = CE + λ · E_x ‖d/dt softmax f(R_t x)|_{t=0}‖²              (``lie``)

``orbit`` draws one element g uniformly from G \\ {e} per batch (per copy of a pack), an unbiased estimate of the mean
over the group at the cost of one more forward. ``lie`` penalises the *squared* Lie derivative under continuous
rotation (Otto, Zolman, Kutz, Brunton, "A unified framework to enforce, discover, and promote symmetry in machine
learning", 2023; Kim, Kim, Kim, "Regularizing towards soft equivariance under mixed symmetries", ICML 2023), one
forward-mode pass along the rotation's tangent (``exactness/lie.py``); the reported ``lee`` metric is the mean
*absolute* Lie derivative. Both are means over the batch of a sum over classes. λ = 0 adds nothing: the plain
backbone. The functions take the forward of a network or of a pack (images [..., B, C, N, N], logits [..., B, K])
and return one value per copy ([...]).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, get_args

import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F
from torch import Tensor

from equisweep.exactness.lie import rotation_tangent
from equisweep.groups import Group

PenaltyKind = Literal["orbit", "lie"]
PENALTY_KINDS = get_args(PenaltyKind)
Forward = Callable[[Tensor], Tensor]


def orbit_penalty(forward: Forward, x: Tensor, logits: Tensor, group: Group) -> Tensor:
    """‖softmax f(g·x) − softmax f(x)‖², summed over classes and averaged over the batch, for one g ∈ G \\ {e}
    drawn per copy (``x`` [..., B, C, N, N] with ``logits`` = f(x))."""
    others = [g for g in group.grid_elements if g != group.elements[0]]
    copies = x.shape[:-4]
    drawn = torch.randint(len(others), copies).to(x.device)  # drawn on the CPU: the same draws on every device
    turned = torch.stack([group.act_on_image(g, x) for g in others])  # [|G|-1, ..., B, C, N, N]
    picked = turned.gather(0, drawn.view(1, *copies, *[1] * 4).expand(1, *x.shape)).squeeze(0)
    change = F.softmax(forward(picked), dim=-1) - F.softmax(logits, dim=-1)
    return change.pow(2).sum(-1).mean(-1)


def lie_penalty(forward: Forward, x: Tensor, background: float | Tensor) -> Tensor:
    """‖d/dt softmax f(R_t x)|_{t=0}‖², summed over classes and averaged over the batch, per copy."""
    # dual numbers, not torch.func.jvp: a training forward updates batch-norm statistics in place
    with fwAD.dual_level():
        logits, logits_tangent = fwAD.unpack_dual(forward(fwAD.make_dual(x, rotation_tangent(x, background))))
    probs = F.softmax(logits, dim=-1)
    tangent = probs * (logits_tangent - (probs * logits_tangent).sum(-1, keepdim=True))  # the softmax's Jacobian
    return tangent.pow(2).sum(-1).mean(-1)


def equivariance_penalty(kind: str, forward: Forward, x: Tensor, logits: Tensor, group: Group,
                         background: float | Tensor) -> Tensor:
    """The penalty ``kind`` (orbit | lie) of the network ``forward`` on the batch ``x``, one value per copy."""
    if kind == "orbit":
        return orbit_penalty(forward, x, logits, group)
    if kind == "lie":
        return lie_penalty(forward, x, background)
    raise ValueError(f"eq_penalty_kind must be one of {', '.join(PENALTY_KINDS)}, got {kind!r}")


@torch.no_grad()
def mean_orbit_change(forward: Forward, x: Tensor, group: Group) -> float:
    """The orbit penalty's expectation on ``x`` [B, C, N, N]: the mean over every g ∈ G \\ {e}, without drawing."""
    reference = F.softmax(forward(x), dim=-1)
    others = [g for g in group.grid_elements if g != group.elements[0]]
    changes = [(F.softmax(forward(group.act_on_image(g, x)), dim=-1) - reference).pow(2).sum(-1).mean()
               for g in others]
    return float(torch.stack(changes).mean())
