"""Measured equivariance error, per layer and per group element, in one forward pass.

For every pixel-grid element g of the group and every hooked layer f, the relative error is

    err(f, g) = ||g·f(x) - f(g·x)|| / ||f(x)||

with norms over the whole batch. The input orbit {g·x} is stacked into one |G|-fold batch and run once, in eval
mode without grad; each layer's output is split back per element and aligned only through ``groups.py``: a 5-D
map [B, C, |G|, H, W] transforms by the regular representation, a 4-D map [B, C, H, W] through its plane, a 3-D
map [B, C, |G|] through its group axis, and a 2-D output [B, K] (logits, pooled features) must be invariant.

What ``output`` measures is what the network's head promises. The coset head pools over the group, so its logits
must be invariant. The ``flatten`` head reads all C·|G| pooled features with one linear layer: turning the input
permutes them along the group axis, so its logits are *not* invariant by design, and comparing them would charge an
exactly equivariant network ~0.04. Its promise is that those features transform by the regular representation:
for it ``output`` (and a hooked layer that ends in it) is the error of the head's pooled [B, C, |G|] features (its
``spatial`` pool), through their group axis.

Limit: adaptive (polyphase) subsampling chooses its grid by a norm that the group leaves unchanged; on an input with a
nontrivial stabiliser (a constant image, or one symmetric under some element) components can tie, the first wins,
and the maps of x and g·x can then differ by an element of the stabiliser: a per-layer error that need not be 0
although the invariant logits stay exact.

Float32 rounding leaves about 1e-7..1e-6 on exact networks; ``EXACT_TOLERANCE`` gives the thresholds the tests
use for "exact" (1e-5 in float32, 1e-10 in float64).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from equisweep.groups import Element, Group, get_group
from equisweep.models import ClassifierHead
from equisweep.models.invariance import InvarianceWrapper

EXACT_TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-10}
OUTPUT = "output"


def act(group: Group, g: Element, y: Tensor) -> Tensor:
    """Apply ``g`` to a layer output ``y`` according to its rank (see the module docstring)."""
    if y.dim() == 5:
        return group.act_on_map(g, y)
    if y.dim() == 4:
        return group.act_on_image(g, y)
    if y.dim() == 3:
        return group.act_on_fibres(g, y)
    return y


def _first_tensor(output) -> Tensor:
    if isinstance(output, Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], Tensor):
        return output[0]
    raise TypeError(f"layer output of type {type(output).__name__} is not a tensor")


def _promised(module: nn.Module) -> nn.Module:
    """The module whose output carries what ``module``'s output promises: the pooled features of a ``flatten`` head
    in it (whose logits are its output), else ``module`` itself."""
    heads = [m for m in module.modules() if isinstance(m, ClassifierHead) and m.kind == "flatten"]
    return heads[-1].spatial if heads else module


def _default_layers(model: nn.Module) -> list[str]:
    """The model's top-level children; none behind an invariance wrapper, whose backbone sees a batch of its own
    making (the orbit, the canonical images), so that only its output has a promise to measure."""
    return [] if isinstance(model, InvarianceWrapper) else [name for name, _ in model.named_children()]


def equivariance_error(model: nn.Module, x: Tensor, group: str | Group | None = None,
                       layers: list[str] | None = None) -> dict[str, dict]:
    """Relative equivariance error of ``model`` on images ``x`` [B, C, N, N].

    ``layers`` names submodules (``model.named_modules()``) to hook; by default the model's top-level children (none
    behind an invariance wrapper).
    Returns ``{layer: {"max": float, "per_element": {label: float}}}`` in forward order, ending with
    ``"output"``: the logits, or a ``flatten`` head's pooled features (see the module docstring). Labels are like
    ``r90`` or ``r270m``; the identity (``r0``) is included.
    """
    g = get_group(group if group is not None else model.group)
    if x.dim() != 4 or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"x must be a batch of square images [B, C, N, N], got {list(x.shape)}")
    modules = dict(model.named_modules())
    names = layers if layers is not None else _default_layers(model)
    unknown = [name for name in names if name not in modules]
    if unknown:
        raise ValueError(f"layers: no submodule named {unknown[0]!r}")
    elements = g.grid_elements
    captured: dict[str, Tensor] = {}
    hooked = {**{name: modules[name] for name in names}, OUTPUT: model}
    handles = [_promised(module).register_forward_hook(
        lambda m, a, out, name=name: captured.__setitem__(name, _first_tensor(out))) for name, module in hooked.items()]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            orbit = torch.cat([g.act_on_image(e, x) for e in elements])  # [|E|·B, C, N, N]
            model(orbit)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    result = {}
    for name in [*names, OUTPUT]:
        y = captured[name].reshape(len(elements), x.shape[0], *captured[name].shape[1:])  # [|E|, B, ...]
        reference = y[0]  # f(x): the identity comes first
        scale = reference.norm().clamp_min(torch.finfo(reference.dtype).tiny)
        per_element = {g.label(e): float((act(g, e, reference) - y[i]).norm() / scale)
                       for i, e in enumerate(elements)}
        result[name] = {"max": max(per_element.values()), "per_element": per_element}
    return result
