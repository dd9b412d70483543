"""The Lie-derivative equivariance error (LEE) of Gruver, Finzi, Goldblum, Wilson, "The Lie Derivative for Measuring
Learned Equivariance", ICLR 2023: how fast a network's output changes under an *infinitesimal* rotation of its input.

For a classifier the output should be invariant, so the Lie derivative with respect to rotation at angle 0 is

    L f(x) = d/dt softmax(f(R_t x)) |_{t=0} = J_{softmax∘f}(x) · v,     v = d/dt R_t x |_{t=0}

(per radian, counter-clockwise as ``equisweep.groups``), and ``lee`` is the mean of |L f(x)| over classes and
samples. It measures continuous SO(2) symmetry: an exactly p4-equivariant net has group-orbit error ~0 at quarter
turns and still a non-zero Lie derivative, since nothing ties its output at 0 degrees to that at 1 degree.

``v`` is the derivative of the bilinear rotation the datamodules use (``regimes.rotate``): output pixel p samples
the input at R_{-t} p, so v(p) = -p_y ∂x/∂u + p_u ∂x/∂y with (p_u, p_y) the pixel's offset from the centre
(y downwards). At t = 0 the sample points sit exactly on the pixels, where the bilinear interpolant has kinks: its
one-sided derivatives differ, and a central finite difference of the rotation averages them. ``rotation_tangent``
takes that two-sided derivative (central differences, the border filled with ``background`` as the rotation fills
it), so the Lie derivative agrees with a central finite difference of the whole network.

The network's tangent comes from one forward-mode pass (``torch.autograd.forward_ad``, the machinery behind
``torch.func.jvp``), in eval mode. Per layer (``layers``), a map h transforms with the input, so its Lie derivative
is J_h v minus the rotation's own tangent on h's plane; for a group map [B, C, |G|, H, W] an infinitesimal rotation
moves only the plane (the group axis is permuted by quarter turns alone). Pooled features and logits ([B, K] or
[B, C, |G|]) should be invariant: their Lie derivative is J_h v. Each layer reports the mean |·| over its elements.

Limit: at a max-pool tie (two equal largest values in one window, e.g. on a flat background) the network is not
differentiable; its derivative is one-sided, and the forward-mode pass follows whichever value the CPU's pooling
kernel picks. A little pixel noise removes the ties where a two-sided derivative is wanted.
"""

from __future__ import annotations

import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F
from torch import Tensor, nn

OUTPUT = "output"


def rotation_tangent(x: Tensor, background: float | Tensor = 0.0) -> Tensor:
    """d/dt of rotating ``x`` [..., H, W] counter-clockwise by t radians about its centre, at t = 0 (two-sided)."""
    height, width = x.shape[-2:]
    fill = torch.as_tensor(background, dtype=x.dtype, device=x.device)
    fill = fill.reshape(-1, 1, 1) if fill.dim() else fill  # per channel: [C, 1, 1] against [..., C, H, W]
    flat = (x - fill).reshape(-1, 1, height, width)  # padding with zeros here is padding with the background
    padded = F.pad(flat, (1, 1, 1, 1)).reshape(*x.shape[:-2], height + 2, width + 2)
    d_u = (padded[..., 1:-1, 2:] - padded[..., 1:-1, :-2]) / 2  # ∂/∂u (columns, to the right)
    d_y = (padded[..., 2:, 1:-1] - padded[..., :-2, 1:-1]) / 2  # ∂/∂y (rows, downwards)
    u = torch.arange(width, dtype=x.dtype, device=x.device) - (width - 1) / 2
    y = torch.arange(height, dtype=x.dtype, device=x.device)[:, None] - (height - 1) / 2
    return -y * d_u + u * d_y


def lie_derivative(model: nn.Module, x: Tensor, background: float | Tensor = 0.0,
                   layers: list[str] | None = None) -> dict[str, float]:
    """Mean |Lie derivative| under rotation of ``model`` on images ``x`` [B, C, N, N]: ``{"output": lee}`` for the
    softmax output, plus one entry per named submodule in ``layers`` (forward order, before ``output``)."""
    modules = dict(model.named_modules())
    names = list(layers or [])
    unknown = [name for name in names if name not in modules]
    if unknown:
        raise ValueError(f"layers: no submodule named {unknown[0]!r}")
    captured: dict[str, tuple[Tensor, Tensor]] = {}

    def keep(name: str):
        def hook(module: nn.Module, args, out: Tensor) -> None:
            primal, tangent = fwAD.unpack_dual(out)
            captured[name] = (primal, torch.zeros_like(primal) if tangent is None else tangent)
        return hook

    handles = [modules[name].register_forward_hook(keep(name)) for name in names]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), fwAD.dual_level():
            out = F.softmax(model(fwAD.make_dual(x, rotation_tangent(x, background))), dim=-1)
            tangent = fwAD.unpack_dual(out).tangent
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    result = {}
    for name in names:
        primal, layer_tangent = captured[name]
        if primal.dim() >= 4:  # a map that rotates with the input: remove the rotation's own motion of the plane
            layer_tangent = layer_tangent - rotation_tangent(primal)
        result[name] = float(layer_tangent.abs().mean())
    result[OUTPUT] = float(tangent.abs().mean())
    return result
