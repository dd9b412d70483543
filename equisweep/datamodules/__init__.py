"""LightningDataModules with training-symmetry regimes; the evaluation views live in ``pipeline.module``.

The names load on first use, so validating a run's settings (regimes, sources) never imports Lightning: a bad
setting is refused in the time it takes to import torch.
"""

import importlib

_EXPORTS = {"EquiDataModule": "datamodule", "build_datamodule": "datamodule", "Regime": "regimes",
            "parse_regime": "regimes"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'equisweep.datamodules' has no attribute {name!r}")
    return getattr(importlib.import_module(f"equisweep.datamodules.{_EXPORTS[name]}"), name)
