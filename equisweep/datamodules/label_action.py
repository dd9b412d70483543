"""How a data source's labels move when its images are turned or mirrored: its *label action*.

On most data a turned image keeps its label. On data whose labels break the symmetry they do not: in
``mnist6-180`` a 6 turned by 180 degrees *is* the other class, and a 6 turned by 90 degrees is neither. A rotated
test image then needs a rotated label, and where no label is defined the image cannot be scored at all.

A label action is a partial map from D4 (quarter turns and left-right mirrors, as ``equisweep.groups`` writes its
elements: mirror first, then rotate) to permutations of the labels: ``permutation[y]`` is the label of ``g·x`` for an
image ``x`` of label ``y``. Where it is defined it is a group homomorphism, so its domain is a subgroup: declaring a
few elements (the generators) fixes it everywhere by composition, and every other element is undefined, since
``g`` and a defined ``h`` would otherwise define ``g∘h⁻¹``. An *invariant* action keeps every label under every
transformation, including rotations by any angle between quarter turns; a non-invariant action is undefined there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from equisweep.groups import P4M, Element

Permutation = tuple[int, ...]
HALF_TURN = Element(2, 0)
MIRROR = Element(0, 1)  # left-right
_IDENTITY = Element(0, 0)


@dataclass(frozen=True)
class LabelAction:
    """The label permutation each element of D4 induces; ``elements`` None: every label invariant under every
    rotation and mirror. Build a non-invariant one with ``generated_by``."""

    elements: tuple[tuple[Element, Permutation], ...] | None = None

    @classmethod
    def generated_by(cls, generators: Mapping[Element, Permutation]) -> LabelAction:
        """The action whose defined elements are those ``generators`` generate, each permutation composed as its
        element is; a ValueError where two compositions give one element two permutations (no such action)."""
        classes = len(next(iter(generators.values())))
        found: dict[Element, Permutation] = {_IDENTITY: tuple(range(classes))}
        frontier = [_IDENTITY]
        while frontier:  # breadth-first closure, checking every product against what was found before
            element = frontier.pop()
            for generator, permutation in generators.items():
                product = P4M.compose(generator, element)
                composed = tuple(permutation[y] for y in found[element])
                known = found.setdefault(product, composed)
                if known is composed:
                    frontier.append(product)
                elif known != composed:
                    raise ValueError(f"label action: element {P4M.label(product)} gets two label permutations "
                                     f"({known} and {composed}); the generators are not a group action")
        return cls(tuple(sorted(found.items(), key=lambda item: P4M.index(item[0]))))

    @property
    def invariant(self) -> bool:
        return self.elements is None

    def defined(self, angle: float, mirror: bool = False) -> bool:
        """True where the labels of "mirror (if ``mirror``), then turn counter-clockwise by ``angle`` degrees" are
        defined."""
        return self.invariant or self._permutation(angle, mirror) is not None

    def relabel(self, labels: Tensor, angle: float, mirror: bool = False) -> Tensor | None:
        """The labels of the transformed images of ``labels`` (any shape), or None where they are undefined."""
        if self.invariant:
            return labels
        permutation = self._permutation(angle, mirror)
        if permutation is None:
            return None
        return torch.as_tensor(permutation, device=labels.device)[labels]

    def _permutation(self, angle: float, mirror: bool) -> Permutation | None:
        quarter = angle / 90.0
        if quarter != round(quarter):
            return None
        return dict(self.elements or ()).get(Element(round(quarter) % 4, int(mirror)))


INVARIANT = LabelAction()
