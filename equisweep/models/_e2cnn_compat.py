"""The one door to e2cnn: import it through ``import_e2cnn()``, which first makes it work on NumPy 2.

e2cnn 0.2.3 is frozen upstream and written for NumPy 1. On NumPy 2 it breaks in three places, all on the way to
building (or hashing the cached basis of) a D_N/O(2) filter basis:

* ``ndarray.tostring()`` (removed) in the ``__hash__`` of the four ``IrrepBasis`` solutions in
  ``e2cnn.kernels.irreps_basis``; the R2Conv basis cache hashes them, so every dihedral R2Conv fails.
* ``np.array(x, copy=False)`` in ``e2cnn.kernels.utils`` (``psi``, ``chi``, ``psichi``): NumPy 2 reads
  ``copy=False`` as "never copy" and raises when a copy is needed; NumPy 1 meant "copy if needed" (``copy=None``).
* ``np.float`` (removed alias) in ``e2cnn.group.groups.o2group``.

The patch is local to e2cnn: the ``__hash__`` methods get a ``tobytes()`` twin (same bytes, same hash), and the two
modules above see ``np`` through a thin proxy that maps ``copy=False`` to ``copy=None`` and ``float`` to the
builtin. The global ``numpy`` module and ``ndarray`` are left untouched. Applying it twice changes nothing.
"""

from __future__ import annotations

import types
from typing import Any

import numpy as np


class _NumPy1Compat(types.ModuleType):
    """``numpy`` as e2cnn expects it: NumPy 1 meanings of ``array(copy=False)`` and ``float``."""

    float = float

    def __init__(self) -> None:
        super().__init__("numpy")

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)

    @staticmethod
    def array(obj: Any, *args: Any, copy: bool | None = True, **kwargs: Any) -> np.ndarray:
        return np.array(obj, *args, copy=None if copy is False else copy, **kwargs)


def _hash_part(value: Any) -> int:
    return hash(value.tobytes()) if isinstance(value, np.ndarray) else hash(value)


def _irrep_basis_hash(self: Any) -> int:
    """``hash(in_irrep) + hash(out_irrep) + hash(mu bytes) + hash(gamma [bytes])``, as e2cnn's own ``__hash__``."""
    return hash(self.in_irrep) + hash(self.out_irrep) + _hash_part(self.mu) + _hash_part(self.gamma)


def _apply() -> None:
    from e2cnn.group.groups import o2group
    from e2cnn.kernels import irreps_basis
    from e2cnn.kernels import utils as kernel_utils

    for module in (kernel_utils, o2group):
        if not isinstance(module.np, _NumPy1Compat):
            module.np = _NumPy1Compat()
    for cls in (irreps_basis.R2FlipsSolution, irreps_basis.R2ContinuousRotationsSolution,
                irreps_basis.R2FlipsDiscreteRotationsSolution, irreps_basis.R2FlipsContinuousRotationsSolution):
        cls.__hash__ = _irrep_basis_hash


def import_e2cnn() -> types.ModuleType:
    """Return the ``e2cnn`` package, patched for NumPy 2 (idempotent)."""
    import e2cnn

    _apply()
    return e2cnn
