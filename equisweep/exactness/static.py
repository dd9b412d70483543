"""Static exactness analysis: does every subsampling layer sample a grid symmetric about the map's centre?

The rule (one axis): a window op with kernel k, stride s and padding p on n pixels places its windows at
i·s - p, i = 0..m-1; the set of windows is mirror-symmetric about the centre iff the last window ends exactly on
the padded border, ``(n + 2p - k) % s == 0``. A network is exactly equivariant under the pixel-grid group iff
this holds at every subsampling op, at the size that op really sees, on every path, with symmetric padding and
(for 90-degree rotations) square maps and ops alike on both axes: a quarter turn swaps the axes, so padding
(1, 2) breaks even a stride-1 conv, and ``F.pad`` must pad the rows as it pads the columns.

``check_exactness`` traces the real model: it runs it on meta tensors (no compute; a zero input on the model's
device if some layer cannot run on meta) and intercepts every ``conv2d``, ``max_pool2d``, ``avg_pool2d`` and
``pad`` call with a ``TorchFunctionMode``, naming each call after the innermost module that made it. So it sees
group convs, torchvision and e2cnn layers, residual shortcuts and functional padding alike, with no tables.
Adaptive and global pools are not listed: their windows are symmetric at every size.

Layers that declare ``exact_at_any_size = True`` (``AdaptiveSubsample``: stride 2 on the grid that follows the
input, ``models/subsampling.py``) get a row of kind ``adaptive``, exact at every size of a square map, and a note;
the stride-1 op they subsample is traced like any other (so its padding is still checked).

Layers relaxed by construction (``relaxed_by_construction = True``: relaxed, rpp and partial group convs) are found
by walking the modules: for them ``exact`` is still the grid verdict, which holds only while their relaxed
parameters are tied (``relaxed``, and a note naming any layer that has moved off tied).
"""

from __future__ import annotations

import inspect
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.overrides import TorchFunctionMode

from equisweep.errors import UserError
from equisweep.groups import P4, Group, get_group, reference_group

SEARCH_RADIUS = 128  # how far nearest_exact_sizes looks on each side


def symmetric_grid(n: int, k: int, s: int, p: int = 0, p_after: int | None = None, ceil_mode: bool = False,
                   kind: str = "conv", count_include_pad: bool = True) -> bool:
    """True iff a k/s/p window op over n pixels samples windows symmetric about the centre.

    For a conv with symmetric padding this is ``(n + 2p - k) % s == 0``: n=33, k=3, s=2, p=1 -> 32 % 2 == 0,
    True; n=32 -> False. The general form compares the list of windows with its mirror image and handles
    asymmetric padding (``p_after``) and pools in ``ceil_mode`` (windows clipped to the padded border, the last
    one starting inside the input or the left padding, as PyTorch does). A conv weighs each window position
    differently, so its windows must mirror including the padding; a pool only sees which real pixels a window
    holds (``max_pool``: padding is -inf) and, for ``avg_pool`` counting the padding, how many cells it divides
    by. ``k`` is the effective extent, dilation·(k-1) + 1.
    """
    p_after = p if p_after is None else p_after
    span = n + p + p_after - k
    if span < 0:
        return False  # no window fits: the layer would get an empty map
    if ceil_mode:
        m = -(-span // s) + 1
        if (m - 1) * s >= n + p:
            m -= 1
    else:
        m = span // s + 1

    def window(i: int) -> tuple:
        start = i * s - p
        end = min(start + k - 1, n - 1 + p_after)
        if kind == "conv":
            return start, end
        divisor = end - start + 1 if kind == "avg_pool" and count_include_pad else 0
        return max(start, 0), min(end, n - 1), divisor  # the real pixels it holds, and what it divides by

    def mirrored(i: int) -> tuple:
        a, b, *divisor = window(m - 1 - i)
        return (n - 1 - b, n - 1 - a, *divisor)

    # Only the windows within a kernel and the padding of either border are clipped; all the others are the same
    # window shifted, so one of them stands for the rest and the check costs O(k / s), not O(n) (any input size).
    edge = (k + p + p_after) // s + 2
    checked = {*range(min(edge + 1, m)), *range(max(m - edge, 0), m)}
    return all(window(i) == mirrored(i) for i in checked)


@dataclass(frozen=True)
class LayerCheck:
    """One subsampling or padding-breaking op as the trace met it; sizes and params per axis (H, W)."""

    name: str
    kind: str  # conv | max_pool | avg_pool | pad | adaptive
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int, int, int]  # top, bottom, left, right
    in_size: tuple[int, int]
    exact: bool


@dataclass(frozen=True)
class ExactnessReport:
    """Whether ``model`` at ``input_size`` commutes exactly with ``group``, and which layers decide it."""

    model: str
    group: str
    input_size: int | tuple[int, int]
    exact: bool
    layers: tuple[LayerCheck, ...]
    nearest_exact_sizes: tuple[int, ...]
    notes: tuple[str, ...] = field(default=())
    relaxed: bool = False  # some layer is relaxed by construction: ``exact`` holds only while it is tied

    @property
    def breaking_layers(self) -> tuple[LayerCheck, ...]:
        return tuple(layer for layer in self.layers if not layer.exact)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    def to_table(self) -> str:
        size = self.input_size if isinstance(self.input_size, int) else "x".join(map(str, self.input_size))
        verdict = "EXACT" if self.exact else "APPROXIMATE"
        if self.exact and self.relaxed:
            verdict = "EXACT only while tied"
        lines = [f"{self.model} ({self.group}) at {size}: {verdict}"]
        header = f"{'name':<32} {'kind':<9} {'kernel':>6} {'stride':>6} {'padding':>8} {'in_size':>9}  exact"
        lines += ["", header, "-" * len(header)]
        for layer in self.layers:
            pad = layer.padding
            pad_text = str(pad[0]) if len(set(pad)) == 1 else ",".join(map(str, pad))
            lines.append(f"{layer.name:<32} {layer.kind:<9} {_pair(layer.kernel):>6} {_pair(layer.stride):>6} "
                         f"{pad_text:>8} {_pair(layer.in_size):>9}  {'yes' if layer.exact else 'NO'}")
        if not self.layers:
            lines.append("(no subsampling layers)")
        if self.nearest_exact_sizes:
            lines += ["", "nearest exact sizes: " + ", ".join(map(str, self.nearest_exact_sizes))]
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


def _pair(values: tuple[int, int]) -> str:
    return str(values[0]) if values[0] == values[1] else f"{values[0]}x{values[1]}"


def _as_pair(value: Any) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    values = tuple(int(v) for v in value)
    return values if len(values) == 2 else (values[0], values[0])


# Signatures of the intercepted functionals, only to bind positional and keyword arguments alike.
def _conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1): ...
def _max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                return_indices=False): ...
def _avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
                count_include_pad=True, divisor_override=None): ...
def _pad(input, pad, mode="constant", value=None): ...


_SIGNATURES = {"conv2d": _conv2d, "max_pool2d": _max_pool2d, "avg_pool2d": _avg_pool2d, "pad": _pad}
_SIGNATURES = {name: inspect.signature(fn) for name, fn in _SIGNATURES.items()}


class _Tracer(TorchFunctionMode):
    """Records every 2-D window op and pad with the size it sees, attributed to the innermost module."""

    def __init__(self, needs_square: bool) -> None:
        super().__init__()
        self.needs_square = needs_square
        self.stack: list[str] = []
        self.ops: list[LayerCheck] = []
        self.empty: tuple[str, tuple[int, int]] | None = None

    def enter(self, module_name: str, module: nn.Module, args: tuple) -> None:
        self.stack.append(module_name or "<model>")
        if getattr(module, "exact_at_any_size", False):  # subsamples on a grid that follows the input
            n = (int(args[0].shape[-2]), int(args[0].shape[-1]))
            exact = not self.needs_square or n[0] == n[1]
            self.ops.append(LayerCheck(self.stack[-1], "adaptive", (1, 1), (2, 2), (0, 0, 0, 0), n, exact))

    def leave(self) -> None:
        self.stack.pop()

    def reset(self) -> None:
        self.stack.clear()
        self.ops.clear()
        self.empty = None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in _SIGNATURES:
            bound = _SIGNATURES[name].bind(*args, **kwargs)
            bound.apply_defaults()
            self._record(name, bound.arguments)
        return func(*args, **kwargs)

    def _record(self, name: str, a: dict[str, Any]) -> None:
        x: Tensor = a["input"]
        n = (int(x.shape[-2]), int(x.shape[-1]))
        layer = self.stack[-1] if self.stack else "<model>"
        if name == "pad":
            pad = list(a["pad"])[:4] + [0] * max(0, 4 - len(a["pad"]))
            left, right, top, bottom = pad
            # A quarter turn swaps the axes, so under rotations the two axes must be padded alike too.
            if (left, top) != (right, bottom) or (self.needs_square and (top, bottom) != (left, right)):
                self.ops.append(LayerCheck(layer, "pad", (1, 1), (1, 1), (top, bottom, left, right), n, False))
            return
        if name == "conv2d":
            kernel = tuple(int(v) for v in a["weight"].shape[-2:])
            stride, dilation, kind = _as_pair(a["stride"]), _as_pair(a["dilation"]), "conv"
            ceil_mode, count_include_pad = False, True
            if isinstance(a["padding"], str):  # 'valid', or 'same' (PyTorch puts an odd extra pixel after)
                totals = [0, 0] if a["padding"] == "valid" else [d * (k - 1) for d, k in zip(dilation, kernel)]
                pads = [(t // 2, t - t // 2) for t in totals]
            else:
                pads = [(p, p) for p in _as_pair(a["padding"])]
        else:
            kernel = _as_pair(a["kernel_size"])
            stride = _as_pair(a["stride"]) if a["stride"] not in (None, []) else kernel
            dilation = _as_pair(a.get("dilation", 1))
            pads = [(p, p) for p in _as_pair(a["padding"])]
            ceil_mode = bool(a["ceil_mode"])
            kind = "max_pool" if name == "max_pool2d" else "avg_pool"
            count_include_pad = bool(a.get("count_include_pad", True))
        extent = [d * (k - 1) + 1 for d, k in zip(dilation, kernel)]
        out = [(size + before + after - e) // s + 1 for size, (before, after), e, s in zip(n, pads, extent, stride)]
        if min(out) < 1 and self.empty is None:
            self.empty = (layer, n)
        per_axis = [symmetric_grid(size, e, s, before, after, ceil_mode, kind, count_include_pad)
                    for size, (before, after), e, s in zip(n, pads, extent, stride)]
        symmetric_pads = all(before == after for before, after in pads)
        # A quarter turn swaps the axes: both must have the same window geometry, even at stride 1.
        axes_alike = kernel[0] == kernel[1] and dilation[0] == dilation[1] and stride[0] == stride[1] \
            and pads[0] == pads[1]
        if max(stride) == 1 and all(per_axis) and symmetric_pads and (axes_alike or not self.needs_square):
            return  # stride 1, padded alike on both sides and (for rotations) on both axes: exact, not worth a row
        square_ok = not self.needs_square or (n[0] == n[1] and axes_alike)
        padding = (*pads[0], *pads[1])
        self.ops.append(LayerCheck(layer, kind, kernel, stride, padding, n, all(per_axis) and square_ok))


def _trace(model: nn.Module, size: tuple[int, int], in_channels: int, needs_square: bool) -> _Tracer:
    """Run ``model`` once under the tracer, in eval mode; restore its mode and remove the hooks afterwards."""
    tracer = _Tracer(needs_square)
    handles = []
    for name, module in model.named_modules():
        handles.append(module.register_forward_pre_hook(lambda m, a, n=name: tracer.enter(n, m, a)))
        handles.append(module.register_forward_hook(lambda m, a, o: tracer.leave()))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            state = {name: torch.empty_like(t, device="meta")
                     for name, t in [*model.named_parameters(), *model.named_buffers()]}
            try:
                _forward(model, torch.zeros(1, in_channels, *size, device="meta"), tracer, state)
            except (NotImplementedError, RuntimeError):  # a layer that cannot run on meta: use real zeros
                tracer.reset()
                param = next(iter(model.parameters()), None)
                _forward(model, torch.zeros(1, in_channels, *size, device=param.device if param is not None else None,
                                            dtype=param.dtype if param is not None else None), tracer)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return tracer


def _forward(model: nn.Module, x: Tensor, tracer: _Tracer, state: dict[str, Tensor] | None = None) -> None:
    """One traced forward; an error after a layer got an empty map is that map's doing, and is recorded."""
    try:
        with tracer:
            if state is None:
                model(x)
            else:
                functional_call(model, state, (x,), tie_weights=False, strict=False)
    except RuntimeError:
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


def _grid_exact(model: nn.Module, size: tuple[int, int], in_channels: int, needs_square: bool) -> bool | None:
    """True/False for a size the model accepts, None when some layer would get an empty map."""
    tracer = _trace(model, size, in_channels, needs_square)
    if tracer.empty:
        return None
    return all(op.exact for op in tracer.ops) and (not needs_square or size[0] == size[1])


def _nearest_exact_sizes(model: nn.Module, n: int, in_channels: int, needs_square: bool) -> tuple[int, ...]:
    found: list[int] = []
    for step in (-1, 1):
        for candidate in range(n + step, n + step * (SEARCH_RADIUS + 1), step):
            if candidate < 1:
                break
            verdict = _grid_exact(model, (candidate, candidate), in_channels, needs_square)
            if verdict is None and step < 0:
                break  # smaller sizes only get emptier
            if verdict:
                found.append(candidate)
                break
    return tuple(sorted(found))


def smallest_valid_size(model: nn.Module, start: int = 1, limit: int = 4096) -> int | None:
    """The smallest square size at or above ``start`` at which no layer gets an empty map."""
    in_channels = _in_channels(model)
    for n in range(max(1, start), limit):
        if not _trace(model, (n, n), in_channels, False).empty:
            return n
    return None


def _relaxed_note(model: nn.Module) -> str | None:
    """The note for a model with layers relaxed by construction; None when it has none."""
    departures = {name: module.departure() for name, module in model.named_modules()
                  if getattr(module, "relaxed_by_construction", False)}
    if not departures:
        return None
    untied = [name for name, value in departures.items() if value > 0]
    state = f"untied now: {', '.join(untied)}" if untied else "all tied now"
    return (f"relaxed by construction: exact only while its relaxed parameters are tied "
            f"({len(departures)} relaxed layers; {state})")


def check_exactness(model: nn.Module, input_size: int | tuple[int, int], group: str | Group | None = None,
                    model_name: str | None = None, nearest: bool = True) -> ExactnessReport:
    """Trace ``model`` at ``input_size`` and report, layer by layer, whether it is exactly ``group``-equivariant.

    ``group`` defaults to ``model.group`` (p4 for models without one; the trivial group is checked as p4).
    ``nearest=False`` skips the search for ``nearest_exact_sizes`` (one trace per size tried).
    Raises ``UserError`` for a non-positive size or one at which some layer would get an empty map.
    """
    size = _as_pair(input_size)
    if min(size) < 1:
        raise UserError(f"input_size: must be positive, got {input_size}")
    g, notes = _resolve_group(model, group)
    in_channels = _in_channels(model)
    needs_square = _has_quarter_turn(g)
    tracer = _trace(model, size, in_channels, needs_square)
    name = model_name or type(model).__name__
    if tracer.empty:
        layer, seen = tracer.empty
        fits = smallest_valid_size(model, start=max(size))
        hint = f"; the smallest size that fits is {fits}" if fits else ""
        raise UserError(f"input_size: {_pair(size)} is too small for {name}: layer '{layer}' would get an empty "
                        f"map from a {seen[0]}x{seen[1]} input{hint}")
    exact = all(op.exact for op in tracer.ops)
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
    sizes = _nearest_exact_sizes(model, max(size), in_channels, needs_square) if nearest else ()
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
                           tuple(tracer.ops), sizes, tuple(notes), relaxed=relaxed_note is not None)

