"""Training-symmetry regimes: which rotations and mirrors the training data shows the network.

A regime string is parsed once into a ``Regime`` (``none``, ``c4``, ``d4``, ``flip``, ``uniform``,
``gaussian(MEAN,STD)`` in degrees). It draws one angle and one mirror flag **per example, every step**, from its
own seeded generator (``per_batch=True`` draws one per batch instead, as the paper's biased regime did), and
``transform_batch`` applies them to a whole batch on its device: ``rot90``/``flip`` (exact permutations) for
multiples of 90 degrees, bilinear resampling about the image centre otherwise, with the area rotated in from
outside the image filled with a given background value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from equisweep.errors import UserError
from equisweep.names import gaussian_params, regime_key
from equisweep.rotation import rotate_bilinear

KINDS = ("none", "c4", "d4", "flip", "uniform", "gaussian(MEAN,STD)")


@dataclass(frozen=True)
class Regime:
    """A distribution over (angle in degrees, mirrored) for training examples."""

    kind: str
    mean: float = 0.0
    std: float = 0.0
    per_batch: bool = False

    def __str__(self) -> str:
        return f"gaussian({self.mean:g},{self.std:g})" if self.kind == "gaussian" else self.kind

    @property
    def is_identity(self) -> bool:
        return self.kind == "none"

    def sample(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """``n`` angles in degrees (float64) and mirror flags (bool), drawn on the CPU from ``generator``."""
        draws = 1 if self.per_batch else n
        angles = torch.zeros(draws, dtype=torch.float64)
        mirrors = torch.zeros(draws, dtype=torch.bool)
        if self.kind in ("c4", "d4"):
            angles = 90.0 * torch.randint(0, 4, (draws,), generator=generator).double()
        elif self.kind == "uniform":
            angles = 360.0 * torch.rand(draws, generator=generator, dtype=torch.float64)
        elif self.kind == "gaussian":
            angles = self.mean + self.std * torch.randn(draws, generator=generator, dtype=torch.float64)
        if self.kind in ("d4", "flip"):
            mirrors = torch.rand(draws, generator=generator) < 0.5
        return angles.expand(n).clone(), mirrors.expand(n).clone()


def parse_regime(text: str, per_batch: bool = False) -> Regime:
    """``"gaussian(45,20)"`` -> ``Regime("gaussian", 45.0, 20.0)``; unknown strings raise a one-line ``UserError``."""
    key = regime_key(text)
    if key in ("none", "c4", "d4", "flip", "uniform"):
        return Regime(key, per_batch=per_batch)
    params = gaussian_params(key)
    if params:
        return Regime("gaussian", *params, per_batch)
    raise UserError(f"train_symmetry: unknown regime {text!r}; choose from: {', '.join(KINDS)} "
                    "(e.g. gaussian(45,20), degrees)")


def rotate(x: Tensor, angles: Tensor, background: Tensor | float = 0.0) -> Tensor:
    """Rotate each image of ``x`` [B, C, H, W] counter-clockwise by ``angles`` [B] degrees about its centre.

    Multiples of 90 degrees use ``torch.rot90`` (exact, same direction as ``equisweep.groups``); other angles
    resample bilinearly, filling what comes in from outside with ``background`` (scalar or per channel).
    """
    quarter = torch.remainder(angles, 360.0) / 90.0
    exact = quarter == quarter.round()
    out = x.clone()
    turns = quarter.round().long() % 4
    for k in (1, 2, 3):  # a loop over the 3 non-trivial quarter turns, each over the whole batch
        mask = exact & (turns == k)  # on the CPU, where the angles were drawn: no device sync to test it
        if mask.any():
            index = mask.nonzero().squeeze(1).to(x.device)
            out[index] = torch.rot90(x[index], k, dims=(-2, -1))
    if not exact.all():
        index = (~exact).nonzero().squeeze(1).to(x.device)
        out[index] = rotate_bilinear(x[index], angles[~exact], background)
    return out


def transform_batch(x: Tensor, regime: Regime, generator: torch.Generator, background: Tensor | float = 0.0
                    ) -> Tensor:
    """Apply ``regime`` to a training batch [B, C, H, W]: mirror (left-right) first, then rotate."""
    if regime.is_identity:
        return x
    angles, mirrors = regime.sample(x.shape[0], generator)
    if mirrors.any():
        mask = mirrors.to(x.device)
        x = torch.where(mask.view(-1, 1, 1, 1), x.flip(-1), x)
    if bool((angles != 0).any()):
        x = rotate(x, angles, background)
    return x


def angle_grid(step: float = 10.0) -> list[float]:
    """The evaluation sweep 0, step, ..., < 360 degrees."""
    return [i * step for i in range(math.ceil(360 / step))]
