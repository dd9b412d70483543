"""The one equivariance assertion every test uses, built only on ``equisweep.groups``."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from equisweep.exactness.measured import act
from equisweep.groups import Group, get_group


def relative_errors(fn: Callable[[Tensor], Tensor], x: Tensor, group: str | Group) -> dict[str, float]:
    """``||g·fn(x) - fn(g·x)|| / ||fn(x)||`` for every pixel-grid element g; ``x`` is an image or a 5-D map."""
    g = get_group(group)
    with torch.no_grad():
        return _errors(fn, x, g)


def _errors(fn: Callable[[Tensor], Tensor], x: Tensor, g: Group) -> dict[str, float]:
    reference = fn(x)
    errors = {}
    for e in g.grid_elements:
        moved_input = g.act_on_map(e, x) if x.dim() == 5 else g.act_on_image(e, x)
        errors[g.label(e)] = float((act(g, e, reference) - fn(moved_input)).norm() / reference.norm())
    return errors


def assert_equivariant(fn: Callable[[Tensor], Tensor], x: Tensor, group: str | Group, atol: float) -> None:
    """Fail unless ``fn`` commutes with every pixel-grid element of ``group`` up to relative error ``atol``."""
    errors = relative_errors(fn, x, group)
    worst = max(errors, key=errors.get)
    assert errors[worst] < atol, f"not equivariant: relative error {errors[worst]:.2e} at {worst} ({errors})"
