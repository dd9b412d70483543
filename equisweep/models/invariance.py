"""Invariance reached (or relaxed) at the input, as records in a registry: ``register_invariance``,
``get_invariance``, ``list_invariances``.

Where a relaxation changes a network's layers, an invariance *wraps* any backbone (a plain CNN, an approximate or
exact G-CNN, a ResNet): the wrapper is an ``InvarianceWrapper`` whose forward takes images to logits as the
backbone does. A method is one module and registers one ``Invariance`` record there: how it wraps a backbone, its
options (a pydantic model whose every field has a default), the term it adds to the training loss (which may read
the batch), the numbers it reports about itself (its diagnostics), and what the static exactness check may say of
it: exactly invariant at every input size (with the reason), or measured only. A setting is a method's name or
``{method: name, **options}``, as for relaxations (``methods.py``).

Built in (``none`` leaves the backbone alone):

* ``average``: the mean of the logits over the group's turned copies of the input, ``group_average.py``;
* ``canonicalize``: a small equivariant net picks an orientation, the backbone sees the image turned back,
  ``canonicalize.py``;
* ``augerino``: a learned range of rotation angles, ``augerino.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import Field
from torch import Tensor, nn

from equisweep.groups import Group, get_group, reference_group
from equisweep.models.methods import MethodOptions, MethodRegistry

FIELD = "invariance"  # the setting's name in configs, recipes and hyperparameters
NO_INVARIANCE = "none"


class InvarianceOptions(MethodOptions):
    """A method's options: subclass it with one defaulted field per option."""


class GroupOptions(InvarianceOptions):
    """The options of a method over a finite group of quarter turns (and mirrors)."""

    group: str | None = Field(None, description="p4 | p4m; default: the backbone's group (p4 for a plain CNN)")


def wrapper_group(backbone_group: str | Group | None, options: InvarianceOptions) -> Group:
    """The group a wrapper acts with: its ``group`` option where it has one, else the backbone's (p4 for a trivial or
    missing one)."""
    return reference_group(getattr(options, "group", None) or backbone_group or "p4")


class InvarianceWrapper(nn.Module):
    """A backbone behind an input-side method. ``group`` is the group whose orbit the wrapper is judged on (the
    LightningModule's test orbit and the measured error read it); ``method`` names its record, ``options`` are the
    method's (its loss term reads them)."""

    method: str

    def __init__(self, backbone: nn.Module, group: Group, options: InvarianceOptions) -> None:
        super().__init__()
        self.backbone, self.group, self.options = backbone, get_group(group), options


@dataclass(frozen=True)
class Inputs:
    """What a wrapper knows of the images it will see: their channels, and the value (one, or one per channel) that
    fills what a rotation brings in from outside the image (the normalised background)."""

    in_channels: int = 1
    background: float | tuple[float, ...] = 0.0


def no_diagnostics(net: nn.Module, x: Tensor) -> dict[str, float]:
    return {}


@dataclass(frozen=True)
class Invariance:
    """One method. ``wrap(backbone, options, inputs)`` builds the wrapper for images described by ``inputs``.
    ``loss(wrapper, x, options)`` is its term of the training loss on the batch ``x`` (None: no term).
    ``diagnostics(wrapper, x)`` reports what it has learned on the images ``x`` (a range, how often each element is
    chosen). ``exact``: True when the wrapper is exactly invariant at every input size whatever the backbone
    (``note`` says why), None when only a measurement can tell."""

    name: str
    options: type[InvarianceOptions]
    wrap: Callable[[nn.Module, Any, Inputs], nn.Module]
    exact: bool | None
    note: str
    loss: Callable[[nn.Module, Tensor, Any], Tensor] | None = None
    diagnostics: Callable[[nn.Module, Tensor], dict[str, float]] = no_diagnostics


class NoOptions(InvarianceOptions):
    """A method without options."""


def _unwrapped(backbone: nn.Module, options: NoOptions, inputs: Inputs) -> nn.Module:
    return backbone


_METHODS: MethodRegistry[Invariance] = MethodRegistry(FIELD)
register_invariance = _METHODS.register
list_invariances = _METHODS.names
get_invariance = _METHODS.get
resolve_invariance = _METHODS.resolve
invariance_settings = _METHODS.settings
invariance_label = _METHODS.label

register_invariance(Invariance(NO_INVARIANCE, NoOptions, _unwrapped, exact=None, note=""))


def wrap_backbone(backbone: nn.Module, setting: str | Mapping[str, Any], inputs: Inputs) -> nn.Module:
    """``backbone`` behind the invariance ``setting`` (itself for ``none``)."""
    record, options = resolve_invariance(setting)
    return record.wrap(backbone, options, inputs)


def invariance_of(net: nn.Module) -> Invariance | None:
    """The record of the wrapper ``net`` is, or None for a network without one."""
    return get_invariance(net.method) if isinstance(net, InvarianceWrapper) else None


def invariance_diagnostics(net: nn.Module, x: Tensor) -> dict[str, float]:
    """What the wrapper ``net`` reports of itself on the images ``x`` (empty for a network without one)."""
    record = invariance_of(net)
    return {} if record is None else record.diagnostics(net, x)
