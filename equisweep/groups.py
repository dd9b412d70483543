"""Finite rotation and reflection groups acting on the pixel grid and on group feature maps.

Conventions (stated once, used everywhere):

* A group is C_N (``rotations=N``) or D_N (``rotations=N, mirrors=True``). ``z2`` is the trivial group C_1,
  ``p4`` is C_4 and ``p4m`` is D_4; ``cN``/``dN`` name the others.
* An element is a pair ``(rotation, mirror)`` meaning ``r^rotation m^mirror``: first mirror, then rotate.
  ``r`` turns the plane by 360/N degrees counter-clockwise as drawn with row 0 at the top, which is
  ``torch.rot90(x, 1, dims=(-2, -1))`` for N = 4. ``m`` mirrors left-right: ``torch.flip(x, dims=(-1,))``.
* Elements are indexed ``mirror * N + rotation``; index 0 is the identity. On the group axis of a feature map,
  slot ``h`` holds the response to the filter transformed by element ``h``.
* ``compose(a, b)`` is ``a∘b``: apply ``b`` first, then ``a``.
* An element acts on a group feature map ``f`` (shape ``[..., |G|, H, W]``) by the regular representation,
  ``(g·f)(h, x) = f(g⁻¹h, g⁻¹x)``: the plane is transformed and slot ``h`` receives slot ``g⁻¹h``.

Only rotations by multiples of 90 degrees map the pixel grid onto itself, so only those elements
(``grid_elements``) act exactly on images; interpolated rotations live in ``datamodules``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor

from equisweep.errors import UserError
from equisweep.names import CYCLIC_OR_DIHEDRAL


@dataclass(frozen=True)
class Element:
    """``r^rotation m^mirror`` in a group with ``rotations`` rotations."""

    rotation: int
    mirror: int

    def label(self, rotations: int) -> str:
        degrees = 360 * self.rotation / rotations
        text = f"r{degrees:g}"
        return f"{text}m" if self.mirror else text


@dataclass(frozen=True)
class Group:
    """C_N or D_N with its regular representation on the group axis of feature maps."""

    name: str
    rotations: int
    mirrors: bool

    @property
    def order(self) -> int:
        return self.rotations * (2 if self.mirrors else 1)

    @cached_property
    def elements(self) -> tuple[Element, ...]:
        return tuple(Element(r, m) for m in range(2 if self.mirrors else 1) for r in range(self.rotations))

    def index(self, element: Element) -> int:
        return element.mirror * self.rotations + element.rotation

    def compose(self, a: Element, b: Element) -> Element:
        """``a∘b`` = r^a m^a r^b m^b = r^(a + (-1)^ma b) m^(ma + mb), since m r m = r⁻¹."""
        sign = -1 if a.mirror else 1
        return Element((a.rotation + sign * b.rotation) % self.rotations, (a.mirror + b.mirror) % 2)

    def inverse(self, a: Element) -> Element:
        # A mirrored element r^k m is its own inverse; a rotation r^k inverts to r^-k.
        return a if a.mirror else Element(-a.rotation % self.rotations, 0)

    def is_grid_symmetry(self, a: Element) -> bool:
        """True iff ``a`` maps the square pixel grid onto itself (rotation by a multiple of 90 degrees)."""
        return (4 * a.rotation) % self.rotations == 0

    @cached_property
    def grid_elements(self) -> tuple[Element, ...]:
        return tuple(a for a in self.elements if self.is_grid_symmetry(a))

    @property
    def acts_exactly_on_grid(self) -> bool:
        """True iff every element is a pixel-grid symmetry (z2, C2, C4, D1, D2, D4)."""
        return len(self.grid_elements) == self.order

    def label(self, a: Element) -> str:
        return a.label(self.rotations)

    def act_on_image(self, a: Element, x: Tensor) -> Tensor:
        """Transform the plane of ``x`` [..., H, W] by ``a`` with exact index operations."""
        if not self.is_grid_symmetry(a):
            raise ValueError(f"element {self.label(a)} of {self.name} is not a pixel-grid symmetry")
        if a.mirror:
            x = torch.flip(x, dims=(-1,))
        quarter_turns = 4 * a.rotation // self.rotations
        return torch.rot90(x, quarter_turns, dims=(-2, -1)) if quarter_turns else x

    def group_axis_permutation(self, a: Element) -> list[int]:
        """``perm`` with ``(a·f)[h] = f[perm[h]]`` on the group axis: ``perm[h] = index(a⁻¹h)``."""
        inv = self.inverse(a)
        return [self.index(self.compose(inv, h)) for h in self.elements]

    def act_on_map(self, a: Element, x: Tensor) -> Tensor:
        """Transform a group feature map ``x`` [..., |G|, H, W] by ``a`` (regular representation)."""
        if x.shape[-3] != self.order:
            raise ValueError(f"group axis has size {x.shape[-3]}, expected |{self.name}| = {self.order}")
        perm = torch.tensor(self.group_axis_permutation(a), device=x.device)
        return self.act_on_image(a, x.index_select(-3, perm))

    def act_on_fibres(self, a: Element, x: Tensor) -> Tensor:
        """Permute the last axis of ``x`` [..., |G|] (a spatially pooled group map) by ``a``."""
        perm = torch.tensor(self.group_axis_permutation(a), device=x.device)
        return x.index_select(-1, perm)


Z2 = Group("z2", 1, False)
P4 = Group("p4", 4, False)
P4M = Group("p4m", 4, True)

_NAMED = {"z2": Z2, "p4": P4, "p4m": P4M}


def reference_group(group: str | Group) -> Group:
    """The group a model of ``group`` is judged against: itself, or p4 for the trivial group, which has
    nothing to be equivariant to (a z2 CNN is asked whether it would commute with quarter turns)."""
    g = get_group(group)
    return P4 if g.order == 1 else g


def get_group(name: str | Group) -> Group:
    """Look up ``z2 | p4 | p4m | c<N> | d<N>``; ``c4`` is the same group as ``p4``, ``d4`` as ``p4m``."""
    if isinstance(name, Group):
        return name
    key = str(name).strip().lower()
    if key in _NAMED:
        return _NAMED[key]
    match = CYCLIC_OR_DIHEDRAL.match(key)
    if not match:
        raise UserError(f"group: unknown group {name!r}; choose from z2, p4, p4m, c<N>, d<N> (e.g. c8, d4)")
    kind, n = match.group(1), int(match.group(2))
    return Group(key, n, kind == "d")
