"""Relaxed equivariance as records in a registry: ``register_relaxation``, ``get_relaxation``, ``list_relaxations``.

A method is one module beside the exact layer it relaxes, and registers one ``Relaxation`` record there: how it
builds the lifting and group layers of a native model (its ``LayerSet``), the one penalty the training loss adds,
``penalty(model, options) -> Tensor``, its options (a pydantic model whose every field has a default; unknown keys
are errors), how far each of its layers has moved from exact (its diagnostics), and the groups and backends it
takes. Whatever builds, trains, checks or configures a relaxed model learns the method from its record alone.

A setting names a method with its defaults (``"rpp"``) or gives one mapping (``{"method": "rpp", "free_wd": 1.0}``);
``relaxation_settings`` turns either into the full mapping, the form configs, recipes and checkpoints keep (the
registry's rules are ``methods.py``'s).

Built in (each exactly equivariant at initialisation; ``none`` is the exact net):

* ``relaxed``: relaxed group convolution (Wang, Walters, Yu, ICML 2022), ``relaxed_gconv.py``;
* ``rpp``: residual pathway prior (Finzi, Benton, Wilson, NeurIPS 2021), ``rpp_gconv.py``;
* ``partial``: learned partial equivariance (Romero & Lohit, NeurIPS 2022), ``partial_gconv.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from equisweep.errors import UserError
from equisweep.groups import Group, get_group
from equisweep.models.layers import LayerSet
from equisweep.models.methods import MethodOptions, MethodRegistry

NO_RELAXATION = "none"
FIELD = "relaxation"  # the setting's name in configs, recipes and hyperparameters


RelaxationOptions = MethodOptions  # a method's options: subclass it with one defaulted field per option


def _relaxed_by_construction(module: nn.Module) -> bool:
    return getattr(module, "relaxed_by_construction", False)


def has_relaxed_layers(model: nn.Module) -> bool:
    """Whether some layer of ``model`` is relaxed by construction (it declares ``relaxed_by_construction = True``)."""
    return any(map(_relaxed_by_construction, model.modules()))


def layer_departures(model: nn.Module) -> dict[str, float]:
    """How far each layer relaxed by construction has moved from exact (its ``departure()``), keyed by module name;
    0 means exact. Empty for a model without relaxed layers."""
    return {name: module.departure() for name, module in model.named_modules() if _relaxed_by_construction(module)}


def penalty_sum(model: nn.Module, terms: Iterable[Tensor]) -> Tensor:
    """The sum of a penalty's ``terms`` as a 0-dim tensor; zero, on the model's device and dtype, without any."""
    terms = list(terms)
    if terms:
        return torch.stack(terms).sum()
    param = next(iter(model.parameters()), None)
    return torch.zeros((), device=None if param is None else param.device, dtype=None if param is None else param.dtype)


def no_param_groups(options: Any) -> dict[str, dict[str, float]]:
    return {}


@dataclass(frozen=True)
class Relaxation:
    """One method. ``layers(group, options, subsampling)`` builds its native ``LayerSet``; ``penalty`` is None for a
    method that adds nothing to the loss; ``groups`` None takes every group.

    ``param_groups(options)``: the optimiser settings (``lr``, ``weight_decay``) that replace the run's for the
    parameters of a given name (the last part of their dotted name), such as a learning rate of their own;
    ``anneal(network, options, progress)``, when given, runs before every training step with the fraction of
    training done (0 to 1), to follow a schedule of the method's own (a temperature, say)."""

    name: str
    options: type[RelaxationOptions]
    layers: Callable[[Group, Any, str], LayerSet]
    penalty: Callable[[nn.Module, Any], Tensor] | None = None
    diagnostics: Callable[[nn.Module], dict[str, float]] = layer_departures
    groups: tuple[str, ...] | None = ("p4", "p4m")
    backends: tuple[str, ...] = ("native",)
    param_groups: Callable[[Any], dict[str, dict[str, float]]] = no_param_groups
    anneal: Callable[[nn.Module, Any, float], None] | None = None

    def optimizer_groups(self, options: RelaxationOptions, named_parameters: Iterable[tuple[str, nn.Parameter]],
                         **run_settings: float) -> list[dict[str, Any]]:
        """The parameters as ``torch.optim`` parameter groups: the run's settings, replaced by ``param_groups``'s
        for the parameters it names (a pack spells the dots of a name as slashes). Groups keep first-seen order."""
        special = self.param_groups(options)
        groups: dict[str, dict[str, Any]] = {}
        for name, param in named_parameters:
            leaf = name.replace("/", ".").rpartition(".")[2]
            key = leaf if leaf in special else ""
            groups.setdefault(key, {"params": [], **run_settings, **special.get(key, {})})["params"].append(param)
        return list(groups.values())

    def check(self, group: str | Group, backend: str) -> None:
        """Refuse, in one line naming the field, a group or backend this method cannot take."""
        group = get_group(group)
        if backend in self.backends and (self.groups is None or group.name in self.groups):
            return
        got = f"backend {backend}" if backend not in self.backends else f"group {group.name}"
        needs = f"the {' or '.join(self.backends)} backend"
        fix = f"backend: {' / '.join(self.backends)}"
        if self.groups is not None:
            needs = f"a {' or '.join(self.groups)} group with {needs}"
            fix = f"group: {' / '.join(self.groups)} with {fix}"
        raise UserError(f"{FIELD}: {self.name!r} needs {needs}; got {got} (set {FIELD}: {NO_RELAXATION}, or {fix})")


_METHODS: MethodRegistry[Relaxation] = MethodRegistry(FIELD)
register_relaxation = _METHODS.register
list_relaxations = _METHODS.names  # in the order they registered (``none`` first)
get_relaxation = _METHODS.get
resolve_relaxation = _METHODS.resolve
relaxation_settings = _METHODS.settings
relaxation_label = _METHODS.label


class RelaxedLayerSet(LayerSet):
    """Native layers whose lifting and group convs are ``lift_type``/``conv_type``, built with ``layer_options``;
    norm, pooling and head are the exact ones."""

    def __init__(self, group: Group, lift_type: type[nn.Module], conv_type: type[nn.Module],
                 subsampling: str = "stride", **layer_options: Any) -> None:
        if group.order == 1:
            raise ValueError(f"a relaxed layer set needs a group with more than one element, got {group.name}")
        super().__init__(group, subsampling)
        self.lift_type, self.conv_type, self.layer_options = lift_type, conv_type, layer_options

    def make_lift(self, cin: int, cout: int, kernel: int, stride: int, padding: int, bias: bool) -> nn.Module:
        return self.lift_type(cin, cout, kernel, self.group, stride, padding, bias, **self.layer_options)

    def make_conv(self, cin: int, cout: int, kernel: int, stride: int, padding: int, bias: bool) -> nn.Module:
        return self.conv_type(cin, cout, kernel, self.group, stride, padding, bias, **self.layer_options)


class NoOptions(RelaxationOptions):
    """A method without options."""


def exact_layers(group: Group, options: NoOptions, subsampling: str) -> LayerSet:
    return LayerSet(group, subsampling)


register_relaxation(Relaxation(NO_RELAXATION, NoOptions, exact_layers, groups=None, backends=("native", "e2cnn")))
