"""Static exactness analysis: does every subsampling layer sample a grid symmetric about the map's centre?

A network is exactly equivariant under the pixel-grid group iff every subsampling op samples a symmetric grid
(``grid.py``), at the size that op really sees, on every path, with symmetric padding and (for 90-degree
rotations) square maps and ops alike on both axes: a quarter turn swaps the axes, so padding (1, 2) breaks even a
stride-1 conv, and ``F.pad`` must pad the rows as it pads the columns.

``check_exactness`` traces the real model: it runs it on meta tensors (no compute; a zero input on the model's
device if some layer cannot run on meta) under ``tracer.Tracer``, which judges every torch function the model
calls on its feature maps. So it sees group convs, torchvision and e2cnn layers, residual shortcuts, functional
padding, slicing and interpolation alike, with no tables. An op that could move or resample the plane and that
it cannot decide makes the verdict ``exact = None`` ("unknown: <op> at <layer>"): it never says EXACT where it has
not proved it.

Layers that declare ``exact_at_any_size = True`` (``AdaptiveSubsample``: stride 2 on the grid that follows the
input, ``models/subsampling.py``) get a row of kind ``adaptive``, exact at every size of a square map, and a note;
the stride-1 op they subsample is traced like any other (so its padding is still checked).

Layers relaxed by construction (``relaxed_by_construction = True``: relaxed, rpp and partial group convs) are found
by walking the modules: for them ``exact`` is still the grid verdict, which holds only while their relaxed
parameters are tied (``relaxed``, and a note naming any layer that has moved off tied).

A network behind an invariance wrapper (``models/invariance.py``) gets its method's verdict: exact at every size
for group averaging and canonicalisation, whatever the backbone (the note says why, and what the backbone alone
is), and unknown for a learned continuous range (augerino), which only a measurement can judge. The layer rows are
the backbone's.

Known limits, of exactness itself rather than of the check:

* Adaptive (polyphase) subsampling picks the component of largest norm; on an input with a nontrivial stabiliser
  (a constant image, or one symmetric under some group element) several components can tie, the first one wins,
  and the maps of x and g·x can then differ by an element of the stabiliser: the per-layer equivariance fails on
  such inputs while the invariant logits stay exact (the tied components are images of one another under the
  stabiliser, which the invariant head cannot see).
* The verdict is about the maps as functions; the Lie derivative (``lie.py``) differentiates them, and at a
  max-pool tie (two equal largest values in one window) the network has only one-sided derivatives.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor, nn
from torch.func import functional_call

from equisweep.errors import UserError
from equisweep.exactness.report import ExactnessReport, LayerCheck, pair_text
from equisweep.exactness.tracer import Tracer, as_pair
from equisweep.groups import P4, Group, get_group, reference_group
from equisweep.models.invariance import Invariance, invariance_of
from equisweep.models.relaxation import layer_departures

SEARCH_RADIUS = 128  # how far nearest_exact_sizes looks on each side

def _trace(model: nn.Module, size: tuple[int, int], in_channels: int, group: Group, needs_square: bool) -> Tracer:
    """Run ``model`` once under the tracer, in eval mode; restore its mode and remove the hooks afterwards."""
    tracer = Tracer(group, needs_square)
    handles = []
    for name, module in model.named_modules():
        handles.append(module.register_forward_pre_hook(lambda m, a, n=name: tracer.enter(n, m, a)))
        handles.append(module.register_forward_hook(lambda m, a, o: tracer.leave(m, o)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            state = {name: torch.empty_like(t, device="meta")
                     for name, t in [*model.named_parameters(), *model.named_buffers()]}
            param = next(iter(model.parameters()), None)
            dtype = param.dtype if param is not None else None
            try:
                _forward(model, torch.zeros(1, in_channels, *size, device="meta", dtype=dtype), tracer, state)
            except UserError:
                raise
            except Exception:  # a layer that cannot run on meta, or not at this size: real zeros tell which
                tracer.reset()
                try:
                    _forward(model, torch.zeros(1, in_channels, *size, dtype=dtype,
                                                device=param.device if param is not None else None), tracer)
                except UserError:
                    raise
                except Exception as error:  # the caller tells a size the model cannot run at from a bug
                    tracer.fail(error)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return tracer


def _forward(model: nn.Module, x: Tensor, tracer: Tracer, state: dict[str, Tensor] | None = None) -> None:
    """One traced forward; an error after a layer got an empty map is that map's doing, and is recorded."""
    tracer.start(x)
    try:
        with tracer:
            if state is None:
                model(x)
            else:
                functional_call(model, state, (x,), tie_weights=False, strict=False)
    except Exception:
        if tracer.empty is None:
            raise


def _in_channels(model: nn.Module) -> int:
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module.in_channels
        if hasattr(module, "in_channels"):
            return int(module.in_channels)
    raise UserError("model: cannot tell its input channels; give a model with a conv layer")


def _resolve_group(model: nn.Module, group: str | Group | None) -> tuple[Group, list[str]]:
    requested = get_group(group if group is not None else getattr(model, "group", P4))
    g = reference_group(requested)
    notes = [] if g == requested else [
        "the trivial group z2 has nothing to be exact about; the verdict is for the sampling grid under p4 "
        "(whether the same layout with group convolutions would be exact)"]
    return g, notes


def _has_quarter_turn(group: Group) -> bool:
    return any(group.is_grid_symmetry(a) and (4 * a.rotation // group.rotations) % 2 == 1
               for a in group.elements)


def _verdict(ops: list[LayerCheck]) -> bool | None:
    """False if some op breaks the grid, else None if some op is unknown, else True (every op proved exact)."""
    verdicts = {op.exact for op in ops}
    return False if False in verdicts else None if None in verdicts else True


def _grid_exact(model: nn.Module, size: tuple[int, int], in_channels: int, group: Group,
                needs_square: bool) -> bool | None:
    """Whether the model is proved exact at a size it accepts (unknown counts as not), None when some layer would
    get an empty map or fails there (an op the check does not know can need a larger map)."""
    tracer = _trace(model, size, in_channels, group, needs_square)
    if tracer.empty or tracer.failure:
        return None
    return _verdict(tracer.ops) is True and (not needs_square or size[0] == size[1])


def _nearest_exact_sizes(model: nn.Module, n: int, in_channels: int, group: Group,
                         needs_square: bool) -> tuple[int, ...]:
    found: list[int] = []
    for step in (-1, 1):
        for candidate in range(n + step, n + step * (SEARCH_RADIUS + 1), step):
            if candidate < 1:
                break
            verdict = _grid_exact(model, (candidate, candidate), in_channels, group, needs_square)
            if verdict is None and step < 0:
                break  # smaller sizes only get emptier
            if verdict:
                found.append(candidate)
                break
    return tuple(sorted(found))


def smallest_valid_size(model: nn.Module, start: int = 1, limit: int = 4096) -> int | None:
    """The smallest square size from ``start`` up to ``limit`` at which the model runs and no layer gets an empty
    map; None if it runs at none of them.

    Each layer's output grows with its input, so the sizes that run are all those from some size up: the search
    doubles the size until one runs, then halves the gap down to the first (about 2 log2(limit) traces)."""
    in_channels = _in_channels(model)

    def runs(n: int) -> bool:
        tracer = _trace(model, (n, n), in_channels, P4, False)
        return not (tracer.empty or tracer.failure)

    failing, n = max(1, start) - 1, max(1, start)
    while not runs(n):
        if n >= limit:
            return None
        failing, n = n, min(2 * n, limit)
    while n - failing > 1:  # failing does not run, n runs
        middle = (failing + n) // 2
        failing, n = (failing, middle) if runs(middle) else (middle, n)
    return n


def _refuse_size(model: nn.Module, name: str, size: tuple[int, int], tracer: Tracer) -> None:
    """Raise the one-line ``UserError`` for a size the model cannot run at: the layer, what it got, and the smallest
    size that fits. A model that fails at every size has a bug, not a bad size: its own error is raised again."""
    fits = smallest_valid_size(model, start=max(size))
    if tracer.empty:
        layer, seen = tracer.empty
        problem = f"layer '{layer}' would get an empty map from a {seen[0]}x{seen[1]} input"
    else:
        layer, seen, error = tracer.failure
        if fits is None:
            raise error
        at = f" on a {seen[0]}x{seen[1]} map" if seen else ""
        problem = f"layer '{layer}' fails{at} ({(str(error).strip() or type(error).__name__).splitlines()[0]})"
    hint = f"the smallest size that fits is {fits}" if fits else "no input size fits"
    raise UserError(f"input_size: {pair_text(size)} is too small for {name}: {problem}; {hint}")


def _relaxed_note(model: nn.Module) -> str | None:
    """The note for a model with layers relaxed by construction; None when it has none."""
    departures = layer_departures(model)
    if not departures:
        return None
    untied = [name for name, value in departures.items() if value > 0]
    state = f"untied now: {', '.join(untied)}" if untied else "all tied now"
    return (f"relaxed by construction: exact only while its relaxed parameters are tied "
            f"({len(departures)} relaxed layers; {state})")


def _wrapped(model: nn.Module, record: Invariance, input_size: int | tuple[int, int], group: str | Group | None,
             model_name: str | None, nearest: bool) -> ExactnessReport:
    """The report of a wrapped network: its method's verdict over the backbone's checked layers."""
    group = get_group(group if group is not None else model.group)
    inner = check_exactness(model.backbone, input_size, group, model_name or type(model).__name__,
                            nearest=nearest and record.exact is None)
    alone = {True: "exact", False: "approximate", None: "unknown"}[inner.exact]
    notes = (*inner.notes, f"{record.note}; the backbone alone is {alone}")
    if record.exact:
        return replace(inner, group=group.name, exact=True, nearest_exact_sizes=(), notes=notes, relaxed=False,
                       unknown=())
    return replace(inner, group=group.name, exact=None, notes=notes, unknown=(f"unknown: {record.name} is measured "
                                                                               "only",))


def check_exactness(model: nn.Module, input_size: int | tuple[int, int], group: str | Group | None = None,
                    model_name: str | None = None, nearest: bool = True) -> ExactnessReport:
    """Trace ``model`` at ``input_size`` and report, layer by layer, whether it is exactly ``group``-equivariant.

    ``group`` defaults to ``model.group`` (p4 for models without one; the trivial group is checked as p4).
    ``nearest=False`` skips the search for ``nearest_exact_sizes`` (one trace per size tried).
    Raises ``UserError`` for a non-positive size or one the model cannot run at (some layer would get an empty map,
    or fails), naming the smallest size that fits.
    """
    record = invariance_of(model)
    if record is not None:
        return _wrapped(model, record, input_size, group, model_name, nearest)
    size = as_pair(input_size)
    if min(size) < 1:
        raise UserError(f"input_size: must be positive, got {input_size}")
    g, notes = _resolve_group(model, group)
    in_channels = _in_channels(model)
    needs_square = _has_quarter_turn(g)
    tracer = _trace(model, size, in_channels, g, needs_square)
    name = model_name or type(model).__name__
    if tracer.empty or tracer.failure:
        _refuse_size(model, name, size, tracer)
    exact = _verdict(tracer.ops)
    if needs_square and size[0] != size[1]:
        exact = False
        notes.append(f"{g.name} rotates by 90 degrees, which needs a square input; got {size[0]}x{size[1]}")
    if not g.acts_exactly_on_grid:
        exact = False
        off = [g.label(a) for a in g.elements if not g.is_grid_symmetry(a)][:3]
        notes.append(f"{g.name} contains rotations that are not symmetries of the pixel grid ({', '.join(off)}, "
                     f"...): the model is approximately equivariant at every input size; the layer verdicts "
                     f"apply to its 90-degree subgroup")
        nearest = False  # no size makes it exact
    sizes = _nearest_exact_sizes(model, max(size), in_channels, g, needs_square) if nearest else ()
    requested = get_group(group if group is not None else getattr(model, "group", g)).name
    adaptive = sum(op.kind == "adaptive" for op in tracer.ops)
    if adaptive:
        notes.append(f"adaptive subsampling: {adaptive} layer(s) subsample by 2 on a grid that follows the input "
                     "(the centred grid of an odd map, the largest-norm polyphase component of an even one), "
                     "exact at any size")
    relaxed_note = _relaxed_note(model)
    if relaxed_note:
        notes.append(relaxed_note)
    return ExactnessReport(name, requested, input_size if isinstance(input_size, int) else size, exact,
                           tuple(tracer.ops), sizes, tuple(notes), relaxed=relaxed_note is not None,
                           unknown=tuple(dict.fromkeys(f"unknown: {op.kind} at {op.name}"
                                                       for op in tracer.ops if op.exact is None)))

