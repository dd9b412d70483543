"""How groups and training regimes are spelled: the string patterns alone, free of torch, so that the parsers
(``equisweep.groups``, ``equisweep.datamodules.regimes``) and the report (which imports no torch) read names alike."""

from __future__ import annotations

import re

CYCLIC_OR_DIHEDRAL = re.compile(r"^([cd])([1-9][0-9]*)$")  # c<N> | d<N>
GAUSSIAN = re.compile(r"^gaussian\(\s*(-?[0-9.]+)\s*,\s*([0-9.]+)\s*\)$")  # gaussian(MEAN,STD), degrees


def regime_key(text: object) -> str:
    """A regime's spelling normalised for matching: ``" Gaussian( 45, 20)"`` -> ``"gaussian(45,20)"``."""
    return str(text).strip().lower().replace(" ", "")


def gaussian_params(regime: object) -> tuple[float, float] | None:
    """``"gaussian(45,20)"`` -> ``(45.0, 20.0)`` (mean, std in degrees); any other regime -> None."""
    match = GAUSSIAN.match(regime_key(regime))
    return (float(match.group(1)), float(match.group(2))) if match else None
