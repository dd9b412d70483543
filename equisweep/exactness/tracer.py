"""The trace behind the static check: every torch function a model calls on its feature maps, judged.

A ``TorchFunctionMode`` sees every functional call, tensor method and ``__getitem__``/``__setitem__`` of one
forward pass. It follows the feature maps (the tensors computed from the input; a weak-keyed table holds each one's
*plane*, its last two sizes) and judges every call on a map:

* window ops -- ``conv2d``, ``conv_transpose2d``, ``max_pool2d`` (with or without indices), ``avg_pool2d``,
  ``lp_pool2d``, ``pad`` -- by the grid rule (``grid.py``) at the size they see. A transposed conv is exact iff it
  has no ``output_padding``: the padding it crops is then the same on both sides. Adaptive pools place symmetric
  windows at every size (a row only where quarter turns meet a non-square output);
* ``F.interpolate`` is linear in its map and depends on nothing else, so it is decided by its own definition: it
  runs on one random float64 plane of the size it sees and on that plane's images under the group, and is exact
  iff the two agree (PyTorch's own kernel, with its rounding of scale factors, is what gets decided);
* slicing a plane, read or written (``x[..., ::2, ::2]``), by ``grid.symmetric_slice``;
* a reduction over the whole plane (``mean``, ``amax``, ... over both axes) ends it: what is left is invariant;
* an op that leaves the plane as it was (elementwise ops, channel mixing, views that keep the last two axes) passes,
  unless it can move pixels within the same shape (``flip``, ``roll``, ``gather``, a transpose of the plane);
* anything else on a plane of more than one pixel -- an op that moves its pixels, or changes its size
  (``unfold``, ``fold``, ``pixel_shuffle``, flattening it) -- is *unknown*: a row with ``exact`` None, kind the
  op's name.

Each call is named after the innermost module that made it. A module that declares ``exact_at_any_size``
(``AdaptiveSubsample``) is trusted as a whole: its inside is not judged, and a row of kind ``adaptive`` records it.

The trace also records where a model cannot run at the traced size: ``empty``, the first layer whose map would
come out empty (a window op is judged before it runs, any other op on what it returns, a one-pixel plane and the
maps an unknown op returned too), and ``failure``, the innermost layer and input plane of an error the forward
raised.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from torch.utils.weak import WeakTensorKeyDictionary

from equisweep.exactness.grid import symmetric_grid, symmetric_slice
from equisweep.exactness.report import LayerCheck
from equisweep.groups import Group

NO_WINDOW = ((1, 1), (1, 1), (0, 0, 0, 0))  # kernel, stride, padding of a row that has no window
PROBE_TOLERANCE = 1e-9  # float64 rounding of an exact interpolation is ~1e-16; a broken one is off by O(1)


# Signatures of the functionals judged by their arguments, only to bind positional and keyword arguments alike.
def _conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1): ...
def _conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1): ...
def _max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                return_indices=False): ...
def _avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
                count_include_pad=True, divisor_override=None): ...
def _lp_pool2d(input, norm_type, kernel_size, stride=None, ceil_mode=False): ...
def _adaptive_pool2d(input, output_size, return_indices=False): ...
def _pad(input, pad, mode="constant", value=None): ...


_SIGNATURES = {name: inspect.signature(fn) for name, fn in {
    "conv2d": _conv2d, "conv_transpose2d": _conv_transpose2d, "max_pool2d": _max_pool2d,
    "max_pool2d_with_indices": _max_pool2d, "avg_pool2d": _avg_pool2d, "lp_pool2d": _lp_pool2d,
    "adaptive_avg_pool2d": _adaptive_pool2d, "adaptive_max_pool2d": _adaptive_pool2d,
    "adaptive_max_pool2d_with_indices": _adaptive_pool2d, "pad": _pad, "interpolate": F.interpolate}.items()}

# Ops that keep a tensor's shape and can still move pixels along an axis: (position, keyword, default) of the axes
# they move. None as the default: every axis (the op flattens the tensor, or moves whatever it is told).
_MOVERS: dict[str, tuple[int, str, Any]] = {
    "flip": (1, "dims", None), "fliplr": (1, "", (1,)), "flipud": (1, "", (0,)), "roll": (2, "dims", None),
    "rot90": (2, "dims", (0, 1)), "sort": (1, "dim", -1), "argsort": (1, "dim", -1), "take": (1, "", None),
    "take_along_dim": (2, "dim", None), "grid_sample": (1, "", None),
    **{name: (1, "dim", None) for name in (
        "cumsum", "cumprod", "cummax", "cummin", "logcumsumexp", "gather", "scatter", "scatter_add",
        "scatter_reduce", "index_select", "index_add", "index_copy", "index_fill", "index_reduce")},
}
# Ops that only reorder axes: judged by where they send the last two axes of a meta tensor of distinct sizes.
_AXIS_ORDER = {"transpose", "swapaxes", "swapdims", "permute", "movedim", "moveaxis", "t"}
_DISTINCT_SIZES = (2, 3, 5, 7, 11, 13, 17, 19)
# Reductions: they end the plane when they reduce both of its axes.
_REDUCTIONS = {"mean", "sum", "nansum", "nanmean", "amax", "amin", "max", "min", "aminmax", "logsumexp", "std",
               "var", "std_mean", "var_mean", "norm", "prod", "all", "any", "count_nonzero", "median", "nanmedian"}
# Methods that make a new tensor from a map's dtype and device only.
_FACTORIES = {"new_zeros", "new_ones", "new_empty", "new_full", "new_tensor"}


def as_pair(value: Any) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    values = tuple(int(v) for v in value)
    return values if len(values) == 2 else (values[0], values[0])


def _tensors(value: Any) -> list[Tensor]:
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in _tensors(item)]
    if isinstance(value, dict):
        return [t for item in value.values() for t in _tensors(item)]
    return []


def _plane(t: Tensor) -> tuple[int, int]:
    return int(t.shape[-2]), int(t.shape[-1])


class Tracer(TorchFunctionMode):
    """Records every judged op with the size it sees, attributed to the innermost module (see the module docstring).

    ``group`` supplies the elements an interpolation is probed with; ``needs_square``: the group turns by 90
    degrees, so ops must treat both axes alike."""

    def __init__(self, group: Group, needs_square: bool) -> None:
        super().__init__()
        self.group, self.needs_square = group, needs_square
        self.stack: list[tuple[str, tuple[int, int] | None]] = []  # each module entered: its name, its input plane
        self.trusted = 0  # depth inside modules that declare exact_at_any_size
        self.ops: list[LayerCheck] = []
        self.empty: tuple[str, tuple[int, int]] | None = None
        self.failure: tuple[str, tuple[int, int] | None, Exception] | None = None
        self.planes = WeakTensorKeyDictionary()
        self.lost = WeakTensorKeyDictionary()

    def start(self, x: Tensor) -> None:
        self.planes[x] = _plane(x)

    def enter(self, module_name: str, module: nn.Module, args: tuple) -> None:
        inputs = [t for t in _tensors(args) if t.dim() >= 2]
        self.stack.append((module_name or "<model>", _plane(inputs[0]) if inputs else None))
        if getattr(module, "exact_at_any_size", False):  # subsamples on a grid that follows the input
            self.trusted += 1
            if self.trusted == 1:
                n = _plane(args[0])
                exact = not self.needs_square or n[0] == n[1]
                self.ops.append(LayerCheck(self.layer, "adaptive", (1, 1), (2, 2), (0, 0, 0, 0), n, exact))

    def leave(self, module: nn.Module, output: Any) -> None:
        self.stack.pop()
        if getattr(module, "exact_at_any_size", False):
            self.trusted -= 1
            if not self.trusted:
                self._follow(_tensors(output))

    def reset(self) -> None:
        self.stack.clear()
        self.ops.clear()
        self.empty = self.failure = None
        self.trusted = 0
        self.planes = WeakTensorKeyDictionary()
        self.lost = WeakTensorKeyDictionary()

    def fail(self, error: Exception) -> None:
        """Record ``error``, raised by the forward, with the innermost layer it left and that layer's input plane
        (a module that raises is never left, so it is still on the stack)."""
        layer, plane = self.stack[-1] if self.stack else ("<model>", None)
        self.failure = (layer, plane, error)

    @property
    def layer(self) -> str:
        return self.stack[-1][0] if self.stack else "<model>"

    def _follow(self, outputs: list[Tensor], keep: tuple[int, int] | None = None) -> None:
        """Mark ``outputs`` as feature maps: all of them, or (``keep``) those that kept that plane."""
        for t in outputs:
            if t.dim() >= 2 and keep in (None, _plane(t)):
                self.planes[t] = _plane(t)

    def _unknown(self, name: str, plane: tuple[int, int]) -> None:
        self.ops.append(LayerCheck(self.layer, name, *NO_WINDOW, plane, None))

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        tensors = [] if self.trusted or name in _FACTORIES else _tensors((args, kwargs))
        maps = [t for t in tensors if t in self.planes]
        if not maps:
            out = func(*args, **kwargs)
            lost = [t for t in tensors if t in self.lost]
            if lost:
                self._note_empty(lost[0], _tensors(out))
                self._lose(_tensors(out))
            return out
        plane = self.planes[maps[0]]
        if name in _SIGNATURES:
            bound = _SIGNATURES[name].bind(*args, **kwargs)
            bound.apply_defaults()
            self._window(name, bound.arguments)  # before the call: an empty map is recorded before it fails
            out = func(*args, **kwargs)
            self._follow(_tensors(out))
            return out
        out = func(*args, **kwargs)
        outputs = _tensors(out)
        self._note_empty(maps[0], outputs)
        if plane == (1, 1):  # one pixel: nothing to move or sample, until a window op (judged above) grows it
            self._follow(outputs, keep=plane)
            return out
        if name == "__setitem__":  # the target holds features now, whatever it held before
            self._slice(args[0], args[1])
            self._follow([args[0]])
            return out
        if name == "__getitem__" and self._slice(args[0], args[1]):
            self._follow(outputs)
            return out
        moves = self._moves_pixels(name, args, kwargs, maps[0].dim())
        if not moves and all(t.dim() >= 2 and _plane(t) == plane for t in outputs):
            self._follow(outputs, keep=plane)
        elif moves or not (name in _REDUCTIONS and self._reduces_plane(name, args, kwargs, maps[0].dim())):
            self._unknown(name, plane)
            self._lose(outputs)
        return out

    def _lose(self, outputs: list[Tensor]) -> None:
        """Keep ``outputs`` of an unknown op as lost maps: no longer judged, still watched for an emptied plane."""
        for t in outputs:
            if t.dim() >= 2:
                self.lost[t] = True

    def _note_empty(self, x: Tensor, outputs: list[Tensor]) -> None:
        """Record the layer if an op emptied the plane of map (or lost map) ``x``, a crop past its size: the map has
        nothing left to run on, even where the op itself did not fail."""
        if self.empty is None and min(_plane(x)) > 0 and any(
                t.shape[:-2] == x.shape[:-2] and min(_plane(t)) == 0 for t in outputs if t.dim() == x.dim()):
            self.empty = (self.layer, _plane(x))

    def _moves_pixels(self, name: str, args: tuple, kwargs: dict, ndim: int) -> bool:
        if name in _AXIS_ORDER:
            if ndim > len(_DISTINCT_SIZES):
                return True
            probe = torch.empty(_DISTINCT_SIZES[:ndim], device="meta")
            return tuple(getattr(torch.Tensor, name)(probe, *args[1:], **kwargs).shape[-2:]) != probe.shape[-2:]
        if name not in _MOVERS:
            return False
        position, keyword, default = _MOVERS[name]
        dims = kwargs.get(keyword, args[position] if len(args) > position else default) if keyword else default
        if dims is None:
            return True
        dims = dims if isinstance(dims, (list, tuple)) else [dims]
        return bool({int(d) % ndim for d in dims} & {ndim - 2, ndim - 1})

    @staticmethod
    def _reduces_plane(name: str, args: tuple, kwargs: dict, ndim: int) -> bool:
        position = 2 if name == "norm" else 1  # norm(input, p, dim)
        dim = kwargs.get("dim", args[position] if len(args) > position else None)
        if dim is None or isinstance(dim, bool) or (isinstance(dim, (list, tuple)) and not dim):
            return True  # no dim (or amax's empty dim, std's old unbiased flag): every axis
        dims = {int(d) % ndim for d in (dim if isinstance(dim, (list, tuple)) else [dim])}
        return {ndim - 2, ndim - 1} <= dims

    def _slice(self, target: Tensor, index: Any) -> bool:
        """Judge an index into a map's plane; False where it leaves the plane alone (the caller judges the rest)."""
        items = index if isinstance(index, tuple) else (index,)
        cut = next((i for i, item in enumerate(items) if item is Ellipsis), len(items))
        front, back = _axes(items[:cut]), _axes(items[cut + 1:])
        rows, columns = (front + [slice(None)] * max(0, target.dim() - len(front) - len(back)) + back)[-2:]
        if all(isinstance(part, slice) and part == slice(None) for part in (rows, columns)):
            return False
        n = _plane(target)
        if not (isinstance(rows, slice) and isinstance(columns, slice)):
            self._unknown("index", n)  # picks pixels by number or by a tensor of positions
            return True
        try:
            kept = [range(*part.indices(size)) for part, size in zip((rows, columns), n)]
        except TypeError:  # a bound that is a tensor: its value is not known to the trace
            self._unknown("slice", n)
            return True
        exact = all(symmetric_slice(size, part) for part, size in zip((rows, columns), n))
        if self.needs_square:
            exact = exact and n[0] == n[1] and kept[0] == kept[1]
        crop = tuple(v for k, size in zip(kept, n) for v in ((-k[0], k[-1] + 1 - size) if k else (0, 0)))
        self.ops.append(LayerCheck(self.layer, "slice", (1, 1), tuple(k.step for k in kept), crop, n, exact))
        return True

    def _window(self, name: str, a: dict[str, Any]) -> None:
        x: Tensor = a["input"]
        n = _plane(x)
        layer = self.layer
        if name == "pad":
            pad = list(a["pad"])[:4] + [0] * max(0, 4 - len(a["pad"]))
            left, right, top, bottom = pad
            # A quarter turn swaps the axes, so under rotations the two axes must be padded alike too.
            if (left, top) != (right, bottom) or (self.needs_square and (top, bottom) != (left, right)):
                self.ops.append(LayerCheck(layer, "pad", (1, 1), (1, 1), (top, bottom, left, right), n, False))
            return
        if name == "interpolate":
            self.ops.append(LayerCheck(layer, "interpolate", *NO_WINDOW, n, self._interpolation_exact(a)))
            return
        if name.startswith("adaptive"):
            size = a["output_size"]
            size = (size, size) if isinstance(size, int) else tuple(size) * (2 if len(size) == 1 else 1)
            out = [whole if wanted is None else int(wanted) for wanted, whole in zip(size, n)]
            if self.needs_square and (n[0] != n[1] or out[0] != out[1]):
                self.ops.append(LayerCheck(layer, "adaptive_pool", *NO_WINDOW, n, False))
            return
        output_padding = (0, 0)
        if name in ("conv2d", "conv_transpose2d"):
            kernel = tuple(int(v) for v in a["weight"].shape[-2:])
            stride, dilation = as_pair(a["stride"]), as_pair(a["dilation"])
            kind = "conv" if name == "conv2d" else "conv_transpose"
            ceil_mode, count_include_pad = False, True
            if isinstance(a["padding"], str):  # 'valid', or 'same' (PyTorch puts an odd extra pixel after)
                totals = [0, 0] if a["padding"] == "valid" else [d * (k - 1) for d, k in zip(dilation, kernel)]
                pads = [(t // 2, t - t // 2) for t in totals]
            else:
                pads = [(p, p) for p in as_pair(a["padding"])]
            if kind == "conv_transpose":
                output_padding = as_pair(a["output_padding"])
        else:
            kernel = as_pair(a["kernel_size"])
            stride = as_pair(a["stride"]) if a["stride"] not in (None, []) else kernel
            dilation = as_pair(a.get("dilation", 1))
            pads = [(p, p) for p in as_pair(a.get("padding", 0))]
            ceil_mode = bool(a["ceil_mode"])
            kind = "max_pool" if name.startswith("max_pool") else "avg_pool"  # lp_pool2d is an avg_pool, scaled
            count_include_pad = bool(a.get("count_include_pad", True))
        extent = [d * (k - 1) + 1 for d, k in zip(dilation, kernel)]
        # A quarter turn swaps the axes: both must have the same window geometry, even at stride 1.
        axes_alike = kernel[0] == kernel[1] and dilation[0] == dilation[1] and stride[0] == stride[1] \
            and pads[0] == pads[1] and output_padding[0] == output_padding[1]
        if kind == "conv_transpose":
            # Stride s spreads the input to (n-1)s+1 cells, symmetric at any n; the crop is p before and
            # p - output_padding after, so the output is centred iff output_padding is 0.
            per_axis = [extra == 0 for extra in output_padding]
            pads = [(p, p - extra) for (p, _), extra in zip(pads, output_padding)]
        else:
            out = [(size + before + after - e) // s + 1 for size, (before, after), e, s in zip(n, pads, extent, stride)]
            if min(out) < 1 and self.empty is None:
                self.empty = (layer, n)
            per_axis = [symmetric_grid(size, e, s, before, after, ceil_mode, kind, count_include_pad)
                        for size, (before, after), e, s in zip(n, pads, extent, stride)]
        symmetric_pads = all(before == after for before, after in pads)
        if max(stride) == 1 and all(per_axis) and symmetric_pads and (axes_alike or not self.needs_square):
            return  # stride 1, padded alike on both sides and (for rotations) on both axes: exact, not worth a row
        square_ok = not self.needs_square or (n[0] == n[1] and axes_alike)
        padding = (*pads[0], *pads[1])
        self.ops.append(LayerCheck(layer, kind, kernel, stride, padding, n, all(per_axis) and square_ok))

    def _interpolation_exact(self, a: dict[str, Any]) -> bool | None:
        """Whether ``F.interpolate`` with these settings commutes with the group on a plane of this size; None for a
        map that is not 4-D (a 5-D map would be interpolated along its group axis too)."""
        if a["input"].dim() != 4:
            return None
        options = {key: value for key, value in a.items() if key != "input"}
        plane = torch.randn(1, 1, *_plane(a["input"]), dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        out = F.interpolate(plane, **options)
        for g in self.group.grid_elements:
            moved = F.interpolate(self.group.act_on_image(g, plane), **options)
            expected = self.group.act_on_image(g, out)
            if moved.shape != expected.shape or (moved - expected).abs().max() > PROBE_TOLERANCE:
                return False
        return True


def _axes(items: tuple) -> list[Any]:
    """The index item each axis gets from ``items`` (no Ellipsis): None and booleans add axes and take none, a
    boolean mask takes as many as it has."""
    taken: list[Any] = []
    for item in items:
        if item is None or isinstance(item, bool):
            continue
        masks = isinstance(item, Tensor) and item.dtype == torch.bool
        taken += [item] * (item.dim() if masks else 1)
    return taken
