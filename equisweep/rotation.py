"""Rotation of images by any angle: bilinear resampling, written with plain tensor ops.

``rotate_bilinear`` turns each image counter-clockwise (the direction of ``torch.rot90`` and ``equisweep.groups``)
about its centre, as ``F.affine_grid`` + ``F.grid_sample`` (bilinear, zero padding, ``align_corners=False``) would,
filling what comes in from outside with a background value. It is written out (coordinates, four gathers, weights)
rather than calling ``grid_sample`` because it must support every autograd mode: reverse mode in the angle (a learned
range of rotations), forward mode in the image (the Lie derivative of a network that rotates its own input, which
``grid_sample`` does not implement), and ``vmap`` (packed training), with no data-dependent branch.
"""

from __future__ import annotations

import torch
from torch import Tensor


def rotate_bilinear(x: Tensor, angles: Tensor, background: Tensor | float = 0.0) -> Tensor:
    """Rotate each image of ``x`` [B, C, H, W] counter-clockwise by ``angles`` [B] degrees by bilinear resampling,
    whatever the angle: differentiable in ``angles`` and in ``x``, in every autograd mode and under ``vmap``."""
    height, width = x.shape[-2:]
    fill = torch.as_tensor(background, dtype=x.dtype, device=x.device).reshape(1, -1, 1, 1)
    theta = torch.deg2rad(angles).to(device=x.device, dtype=x.dtype)
    cos, sin = torch.cos(theta)[:, None, None], torch.sin(theta)[:, None, None]
    # Output pixel (row i, column j) samples the input at R(-angle) of its normalised position (x right, y down),
    # as affine_grid with [[cos, -sin, 0], [sin, cos, 0]]; back in pixels, as grid_sample unnormalises.
    u = ((2 * torch.arange(width, dtype=x.dtype, device=x.device) + 1) / width - 1)[None, None, :]
    v = ((2 * torch.arange(height, dtype=x.dtype, device=x.device) + 1) / height - 1)[None, :, None]
    columns = ((cos * u - sin * v + 1) * width - 1) / 2  # [B, H, W]
    rows = ((sin * u + cos * v + 1) * height - 1) / 2
    left, top = columns.floor(), rows.floor()
    right_weight, bottom_weight = columns - left, rows - top
    flat = (x - fill).flatten(-2)  # [B, C, H·W]
    out = torch.zeros_like(flat)
    for dy, wy in ((0, 1 - bottom_weight), (1, bottom_weight)):
        for dx, wx in ((0, 1 - right_weight), (1, right_weight)):
            r, c = top + dy, left + dx
            inside = (r >= 0) & (r < height) & (c >= 0) & (c < width)
            index = (r.clamp(0, height - 1) * width + c.clamp(0, width - 1)).long().flatten(-2)  # [B, H·W]
            picked = flat.gather(-1, index.unsqueeze(-2).expand_as(flat))
            out = out + picked * (wy * wx * inside).flatten(-2).unsqueeze(-2)
    return out.unflatten(-1, (height, width)) + fill
