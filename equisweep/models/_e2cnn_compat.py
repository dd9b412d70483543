"""The one door to e2cnn: import it through ``import_e2cnn()``, which first makes it work on NumPy 2 and torch 2.

e2cnn 0.2.3 is frozen upstream and written for NumPy 1 and torch 1. Building C_N/D_N layers breaks in four places:

* ``ndarray.tostring()`` (removed in NumPy 2) in the ``__hash__`` of four ``IrrepBasis`` solutions in
  ``e2cnn.kernels.irreps_basis``; R2Conv's basis cache hashes them, so every dihedral R2Conv fails.
* ``np.array(x, copy=False)`` in ``e2cnn.kernels.utils`` (``psi``, ``chi``, ``psichi``): NumPy 2 reads it as
  "never copy" and raises when a copy is needed; NumPy 1 meant "copy if needed", now spelt ``copy=None``.
* ``np.float`` (removed alias) in ``e2cnn.group.groups.o2group``.
* ``uint8`` index masks in ``SingleBlockBasisExpansion``: torch only warns about them, except that a mask picking
  a single basis element (a 1x1 lifting conv) goes through ``masked_fill_``, which refuses them.

The fixes stay inside e2cnn: the four ``__hash__`` methods get a ``tobytes()`` twin (same bytes, same hash), and
the affected modules see ``np``/``torch`` through a namespace that overrides just those names (``array`` copies if
needed, ``float`` is the builtin, ``uint8`` masks are ``bool``). The global ``numpy``, ``ndarray`` and ``torch``
are left untouched. Applying the fixes twice changes nothing.
"""

from __future__ import annotations

import types
from typing import Any

import numpy as np
import torch


class _Overridden(types.ModuleType):
    """``base`` with a few names replaced; every other attribute is looked up on ``base``."""

    def __init__(self, base: types.ModuleType, **overrides: Any) -> None:
        super().__init__(base.__name__)
        self.__dict__.update(overrides)
        self._base = base

    def __getattr__(self, name: str) -> Any:
        if "_base" not in self.__dict__:  # half-built (e.g. mid-copy): no recursion through __getattr__
            raise AttributeError(name)
        return getattr(self.__dict__["_base"], name)


def _array_copy_if_needed(obj: Any, *args: Any, copy: bool | None = True, **kwargs: Any) -> np.ndarray:
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
    from e2cnn.nn.modules.r2_conv import basisexpansion_singleblock as single_block

    patches = [(kernel_utils, "np", dict(array=_array_copy_if_needed)), (o2group, "np", dict(float=float)),
               (single_block, "np", dict(uint8=np.bool_)), (single_block, "torch", dict(uint8=torch.bool))]
    for module, name, overrides in patches:
        if not isinstance(getattr(module, name), _Overridden):
            setattr(module, name, _Overridden(getattr(module, name), **overrides))
    for cls in (irreps_basis.R2FlipsSolution, irreps_basis.R2ContinuousRotationsSolution,
                irreps_basis.R2FlipsDiscreteRotationsSolution, irreps_basis.R2FlipsContinuousRotationsSolution):
        cls.__hash__ = _irrep_basis_hash


def import_e2cnn() -> types.ModuleType:
    """Return the ``e2cnn`` package with the fixes above applied (idempotent)."""
    import e2cnn

    _apply()
    return e2cnn
