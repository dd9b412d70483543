"""The static check's verdict: one row per subsampling, padding or unknown op, and the report that renders it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class LayerCheck:
    """One subsampling, padding-breaking or unknown op as the trace met it; sizes and params per axis (H, W).

    ``exact`` is None for an op the check cannot decide (``kind`` is then the op's name)."""

    name: str
    kind: str  # conv | conv_transpose | max_pool | avg_pool | pad | slice | interpolate | adaptive | <unknown op>
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int, int, int]  # top, bottom, left, right
    in_size: tuple[int, int]
    exact: bool | None


@dataclass(frozen=True)
class ExactnessReport:
    """Whether ``model`` at ``input_size`` commutes exactly with ``group``, and which layers decide it.

    ``exact`` is True only where every op was proved exact, False where some op breaks the grid, and None where
    neither holds: ``unknown`` then gives the reasons (``"unknown: unfold at body.3"``)."""

    model: str
    group: str
    input_size: int | tuple[int, int]
    exact: bool | None
    layers: tuple[LayerCheck, ...]
    nearest_exact_sizes: tuple[int, ...]
    notes: tuple[str, ...] = field(default=())
    relaxed: bool = False  # some layer is relaxed by construction: ``exact`` holds only while it is tied
    unknown: tuple[str, ...] = field(default=())

    @property
    def breaking_layers(self) -> tuple[LayerCheck, ...]:
        return tuple(layer for layer in self.layers if layer.exact is False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    def to_table(self) -> str:
        size = self.input_size if isinstance(self.input_size, int) else "x".join(map(str, self.input_size))
        verdict = {True: "EXACT", False: "APPROXIMATE", None: "UNKNOWN"}[self.exact]
        if self.exact and self.relaxed:
            verdict = "EXACT only while tied"
        if self.exact is None:
            verdict += f" ({'; '.join(self.unknown)})"
        lines = [f"{self.model} ({self.group}) at {size}: {verdict}"]
        header = f"{'name':<32} {'kind':<9} {'kernel':>6} {'stride':>6} {'padding':>8} {'in_size':>9}  exact"
        lines += ["", header, "-" * len(header)]
        for layer in self.layers:
            pad = layer.padding
            pad_text = str(pad[0]) if len(set(pad)) == 1 else ",".join(map(str, pad))
            mark = {True: "yes", False: "NO", None: "?"}[layer.exact]
            lines.append(f"{layer.name:<32} {layer.kind:<9} {pair_text(layer.kernel):>6} "
                         f"{pair_text(layer.stride):>6} {pad_text:>8} {pair_text(layer.in_size):>9}  {mark}")
        if not self.layers:
            lines.append("(no subsampling layers)")
        if self.nearest_exact_sizes:
            lines += ["", "nearest exact sizes: " + ", ".join(map(str, self.nearest_exact_sizes))]
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


def pair_text(values: tuple[int, int]) -> str:
    return str(values[0]) if values[0] == values[1] else f"{values[0]}x{values[1]}"
