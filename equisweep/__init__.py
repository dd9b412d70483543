"""equisweep: exact versus approximate equivariance in group-equivariant CNNs."""

from __future__ import annotations

from os import PathLike
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from equisweep.pipeline.train.module import EquivarianceClassifier

__version__ = "0.1.0"


def load(path: str | PathLike[str]) -> EquivarianceClassifier:
    """The trained module of any checkpoint equisweep writes (a run, a sweep trial, a packed copy), in eval mode:
    ``EquivarianceClassifier.load_from_checkpoint(path).eval()``. Imported here, not at ``import equisweep``,
    which must stay free of torch."""
    from equisweep.pipeline.train.module import EquivarianceClassifier

    return EquivarianceClassifier.load_from_checkpoint(path).eval()
