"""Model registry: ``build_model(name, ...)`` is the one public way to make a network."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, get_args

from torch import nn

from equisweep.errors import UserError
from equisweep.groups import Group, get_group
from equisweep.models.heads import HEADS
from equisweep.models.invariance import NO_INVARIANCE, Inputs, wrap_backbone
from equisweep.models.layers import LayerSet
from equisweep.models.p4cnn import DROPOUT, P4CNN
from equisweep.models.relaxation import Relaxation, RelaxationOptions, resolve_relaxation
from equisweep.models.resnet import PreActResNet
from equisweep.models.subsampling import SUBSAMPLINGS

Builder = Callable[..., nn.Module]
_REGISTRY: dict[str, Builder] = {}
Backend = Literal["native", "e2cnn"]
BACKENDS = get_args(Backend)


def register_model(name: str) -> Callable[[Builder], Builder]:
    """File a builder ``fn(layers, width, num_classes, in_channels, head)`` under ``name``; names are unique."""

    def wrap(fn: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn

    return wrap


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def default_width(paper_widths: dict[int, int], group: Group) -> int:
    """The paper's width for |G| in 1, 4, 8; otherwise the z2 width / sqrt|G|, which keeps parameters ~constant."""
    return paper_widths.get(group.order) or max(1, round(paper_widths[1] / math.sqrt(group.order)))


def check_relaxation(relaxation: str | Mapping[str, Any], group: str | Group,
                     backend: str) -> tuple[Relaxation, RelaxationOptions]:
    """The record and options of a relaxation setting (a method's name or ``{method: name, **options}``); refuses, in
    one line naming the field, one that is unknown, has bad options, or that ``group``/``backend`` cannot take."""
    record, options = resolve_relaxation(relaxation)
    record.check(group, backend)
    return record, options


def check_subsampling(subsampling: str, backend: str) -> None:
    """Refuse, in one line naming the field, a subsampling that is unknown or that ``backend`` cannot take."""
    if subsampling not in SUBSAMPLINGS:
        raise UserError(f"subsampling: unknown subsampling {subsampling!r}; choose from: {', '.join(SUBSAMPLINGS)}")
    if subsampling == "adaptive" and backend != "native":
        raise UserError(f"subsampling: 'adaptive' needs the native backend, got backend {backend} "
                        "(set subsampling: stride, or backend: native)")


def _layer_set(group: Group, backend: str, relaxation: str | Mapping[str, Any], subsampling: str) -> LayerSet:
    record, options = check_relaxation(relaxation, group, backend)
    check_subsampling(subsampling, backend)
    if backend == "native":
        if not group.acts_exactly_on_grid:
            raise UserError(f"group: {group.name!r} has rotations off the pixel grid; "
                            "the native backend supports z2, p4, p4m: use --backend e2cnn for it")
        return record.layers(group, options, subsampling)
    from equisweep.models.e2cnn_backend import E2LayerSet  # imported lazily: e2cnn is slow to import

    return E2LayerSet(group)


def build_model(name: str, group: str | Group = "p4", num_classes: int = 10, in_channels: int = 1,
                width: int | None = None, head: str = "coset", backend: str = "native",
                relaxation: str | Mapping[str, Any] = "none", subsampling: str = "stride",
                invariance: str | Mapping[str, Any] = NO_INVARIANCE, background: float | Sequence[float] = 0.0,
                **options) -> nn.Module:
    """Build a registered model for ``group`` (z2 | p4 | p4m natively, c<N> | d<N> with backend='e2cnn').

    ``relaxation`` (a registered method's name with its defaults, or ``{method: name, **options}``; built in: none,
    relaxed, rpp, partial, see ``models/relaxation.py``) swaps in the method's lifting and group convs.
    ``subsampling`` (stride | adaptive, see ``models/subsampling.py``): ``adaptive`` computes every stride-2 conv and
    pool at stride 1 and keeps the grid that follows the input, which makes a native model exact at every size.
    ``invariance`` (a registered method's name or ``{method: name, **options}``; built in: none, average,
    canonicalize, augerino, see ``models/invariance.py``) wraps the network; ``background`` (one value or one per
    channel) is what fills the corners a wrapper's rotation brings in (the data's normalised background).
    ``options`` go to the model's own builder (``p4cnn`` takes ``dropout``); one it does not know is an error.
    """
    if name not in _REGISTRY:
        raise UserError(f"model: unknown model {name!r}; choose from: {', '.join(list_models())}")
    if backend not in BACKENDS:
        raise UserError(f"backend: unknown backend {backend!r}; choose from: {', '.join(BACKENDS)}")
    if head not in HEADS:
        raise UserError(f"head: unknown head {head!r}; choose from: {', '.join(HEADS)}")
    for field, value in (("num_classes", num_classes), ("in_channels", in_channels), ("width", width)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise UserError(f"{field}: must be a positive integer, got {value!r}")
    builder = _REGISTRY[name]
    unknown = set(options) - set(inspect.signature(builder).parameters)
    if unknown:
        raise UserError(f"model: {name} takes no option {sorted(unknown)[0]!r}")
    layers = _layer_set(get_group(group), backend, relaxation, subsampling)
    net = builder(layers, width=width, num_classes=num_classes, in_channels=in_channels, head=head, **options)
    fill = tuple(background) if isinstance(background, Sequence) else float(background)
    return wrap_backbone(net, invariance, Inputs(in_channels, fill))


P4CNN_WIDTHS = {1: 20, 4: 10, 8: 7}
RESNET18_WIDTHS = {1: 64, 4: 32, 8: 23}
RESNET44_WIDTHS = {1: 32, 4: 16, 8: 12}


@register_model("p4cnn")
def p4cnn(layers: LayerSet, width: int | None = None, dropout: float = DROPOUT, **kw) -> P4CNN:
    """The paper's rotated-MNIST G-CNN (about 25k parameters for every group at the default width)."""
    return P4CNN(layers, width or default_width(P4CNN_WIDTHS, layers.group), dropout=dropout, **kw)


@register_model("resnet18")
def resnet18(layers: LayerSet, width: int | None = None, **kw) -> PreActResNet:
    """Pre-activation ResNet-18: four stages of two blocks, strides 1, 2, 2, 2."""
    return PreActResNet(layers, (2, 2, 2, 2), width or default_width(RESNET18_WIDTHS, layers.group), **kw)


@register_model("resnet44")
def resnet44(layers: LayerSet, width: int | None = None, **kw) -> PreActResNet:
    """Pre-activation ResNet-44: three stages of seven blocks, strides 1, 2, 2."""
    return PreActResNet(layers, (7, 7, 7), width or default_width(RESNET44_WIDTHS, layers.group), **kw)
