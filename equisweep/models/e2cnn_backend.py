"""e2cnn steerable convolutions (Weiler & Cesa, NeurIPS 2019) for any C_N / D_N, in our plain-tensor 5-D layout.

Only the lifting and group convolutions come from e2cnn (``R2Conv`` between trivial/regular field types); norm,
pooling and heads are the native ones, which work for any group order. Geometric tensors never leave this file:
every layer takes and returns plain tensors laid out as in ``equisweep.groups``.

How e2cnn 0.2.3's conventions line up with ours (read off its source; the tests check each layer numerically):

* rotation element ``k`` moves the plane by ``rotate_array(x, 2πk/N)``, which is ``np.rot90(x, k, axes=(-2, -1))``
  for quarter turns and ``scipy.ndimage.rotate`` in the same sense otherwise: the direction of our ``r``;
* ``FlipRot2dOnR2``'s reflection ``(1, 0)`` with the default axis π/2 is ``x[..., ::-1, :]`` then a half turn,
  i.e. a left-right flip: our ``m``;
* both act on a map by the left regular representation, ``f'(h, x) = f(g⁻¹h, g⁻¹x)`` (``ρ(g)e_h = e_{gh}``);
* C regular fields are stored field-major as ``[B, C·|G|, H, W]``, so a reshape gives ``[B, C, |G|, H, W]``.

So our slot ``h = r^k m^j`` is e2cnn's fibre of ``φ(h) = rotation^k · mirror^j``. ``fibre_order`` computes that
index with e2cnn's own ``combine`` and element list; with the default axis it is the identity (e2cnn writes
``r^k f^j`` as ``(j, k)`` and lists ``(0, 0..N-1), (1, 0..N-1)``, our order) and the layers do not permute; another
flip axis (``axis=0``: ``m`` is e2cnn's ``r^(N/2) f``) gives a real permutation, applied on the way in and out.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from equisweep.errors import UserError
from equisweep.groups import Group, get_group
from equisweep.models._e2cnn_compat import import_e2cnn
from equisweep.models.gconv import check_geometry
from equisweep.models.layers import LayerSet


def fibre_order(group: Group, gspace: Any) -> list[int]:
    """``order[h]``: the index in ``gspace``'s regular fibre of our group-axis slot ``h``.

    ``h = r^k m^j`` maps to ``rotation^k · mirror^j`` composed with e2cnn's ``combine``, where ``rotation`` is
    e2cnn's element 1 (same direction as ours) and ``mirror`` its reflection ``r^t f`` whose axis is vertical: e2cnn's
    ``r^t f`` flips about the axis at angle ``axis + πt/N``, so ``t = N (1/2 - axis/π) mod N``.
    """
    fibergroup, n = gspace.fibergroup, group.rotations
    rotation, mirror = 1, None
    if group.mirrors:
        turns = n * (0.5 - gspace.axis / math.pi)
        if abs(turns - round(turns)) > 1e-9:
            raise ValueError(f"gspace: its flip axis {gspace.axis:.4g} rad gives no left-right mirror in D{n}")
        rotation, mirror = (0, 1), (1, round(turns) % n)
    order = []
    for h in group.elements:
        element = fibergroup.identity
        for _ in range(h.rotation):
            element = fibergroup.combine(element, rotation)
        if h.mirror:
            element = fibergroup.combine(element, mirror)
        order.append(fibergroup.elements.index(element))
    return order


class E2Conv(nn.Module):
    """An e2cnn ``R2Conv`` between trivial (``lifting``) or regular fields and regular fields, in our layout.

    lifting: in [B, C_in, H, W] -> out [B, C_out, |G|, H', W']; otherwise in [B, C_in, |G|, H, W] -> out
    [B, C_out, |G|, H', W'], with H' = (H + 2p - k) // s + 1 (kernel k, stride s, padding p, as given to R2Conv).
    g acts on images through the plane and on 5-D maps by the regular representation of ``equisweep.groups``. The
    layer commutes with every pixel-grid element when (H + 2p - k) % s == 0 on a square map, and only approximately
    otherwise; off-grid elements (45° in C8) hold only up to e2cnn's sampling of its filters on the pixel grid.
    Even k works from 4 up; e2cnn's default rings leave k = 2 without a basis. Weights get R2Conv's He init.
    """

    def __init__(self, gspace: Any, group: Group, in_channels: int, out_channels: int,
                 kernel_size: int, stride: int = 1, padding: int = 0, bias: bool = True,
                 lifting: bool = False) -> None:
        super().__init__()
        check_geometry(kernel_size, stride, padding)
        for field, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{field} must be an int >= 1, got {value!r}")
        if gspace.fibergroup.order() != group.order:
            raise ValueError(f"gspace: its group {gspace.fibergroup.name} does not have the order of {group.name}")
        e2nn = import_e2cnn().nn
        self.group, self.lifting = group, lifting
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        in_repr = gspace.trivial_repr if lifting else gspace.regular_repr
        in_type = e2nn.FieldType(gspace, [in_repr] * in_channels)
        out_type = e2nn.FieldType(gspace, [gspace.regular_repr] * out_channels)
        # recompute: e2cnn's basis cache hands one basis module to every matching layer of every model, so
        # .double() or .to(device) on one model would change the others (and its key ignores the flip axis).
        self.conv = e2nn.R2Conv(in_type, out_type, kernel_size, padding=padding, stride=stride, bias=bias,
                                recompute=True)
        self.conv.train()  # drops the zero filter/expanded_bias buffers R2Conv registers until its first train()
        self._geometric_tensor = e2nn.GeometricTensor
        order = fibre_order(group, gspace)
        identity = order == list(range(group.order))
        # to_ours[h]: e2cnn fibre read by our slot h; to_e2cnn[i]: our slot read by e2cnn fibre i.
        self.register_buffer("to_ours", None if identity else torch.tensor(order), persistent=False)
        inverse = sorted(range(group.order), key=order.__getitem__)
        self.register_buffer("to_e2cnn", None if identity else torch.tensor(inverse), persistent=False)

    def train(self, mode: bool = True) -> E2Conv:
        """Keep the R2Conv in training mode (it expands its filter every call): in eval mode it stores the expanded
        filter as a buffer, so ``state_dict`` keys would depend on the mode and a state loaded later would go stale."""
        self.training = mode
        return self

    def forward(self, x: Tensor) -> Tensor:
        order, n = self.group.order, self.in_channels
        if self.lifting and (x.dim() != 4 or x.shape[1] != n):
            raise ValueError(f"E2Conv (lifting) expects [B, {n}, H, W], got {list(x.shape)}")
        if not self.lifting:
            if x.dim() != 5 or x.shape[1] != n or x.shape[2] != order:
                raise ValueError(f"E2Conv expects [B, {n}, {order}, H, W], got {list(x.shape)}")
            if self.to_e2cnn is not None:
                x = x.index_select(2, self.to_e2cnn)
            x = x.flatten(1, 2)  # [B, C_in·|G|, H, W], field-major as e2cnn stores regular fields
        y = self.conv(self._geometric_tensor(x, self.conv.in_type)).tensor  # [B, C_out·|G|, H', W']
        y = y.view(y.shape[0], self.out_channels, order, *y.shape[-2:])  # [B, C_out, |G|, H', W']
        return y if self.to_ours is None else y.index_select(2, self.to_ours)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, group={self.group.name}, lifting={self.lifting}, "
                f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}")


class E2LayerSet(LayerSet):
    """Layers for ``c<N>`` / ``d<N>`` (N >= 2, on or off the pixel grid): e2cnn lift and conv, native norm/pool/head."""

    def __init__(self, group: Group | str) -> None:
        group = get_group(group)
        if group.rotations < 2:
            raise UserError(f"group: the e2cnn backend needs c<N> or d<N> with N >= 2, got {group.name!r}; "
                            "use backend='native' for z2")
        super().__init__(group)
        gspaces = import_e2cnn().gspaces
        self.gspace = gspaces.FlipRot2dOnR2(group.rotations) if group.mirrors else gspaces.Rot2dOnR2(group.rotations)

    def lift(self, cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0,
             bias: bool = False) -> nn.Module:
        return E2Conv(self.gspace, self.group, cin, cout, kernel, stride, padding, bias, lifting=True)

    def conv(self, cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0,
             bias: bool = False) -> nn.Module:
        return E2Conv(self.gspace, self.group, cin, cout, kernel, stride, padding, bias)
