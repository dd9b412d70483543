"""LightningDataModules with training-symmetry regimes; the evaluation views live in ``pipeline.module``.

The names load on first use, so validating a run's settings (regimes, sources) never imports Lightning: a bad
setting is refused in the time it takes to import torch.
"""

from equisweep.lazy import lazy_exports

_EXPORTS = {"EquiDataModule": "datamodule", "build_datamodule": "datamodule", "Regime": "regimes",
            "parse_regime": "regimes"}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
