"""Data: one LightningDataModule for every source (``datamodule.py``), the sources as records (``sources.py``: files,
splits, statistics and the label action that says which label a turned test image has) and the training-symmetry
regimes (``regimes.py``). The evaluation views themselves are applied by ``pipeline.train.module``.

The names load on first use, so validating a run's settings (regimes, sources) never imports Lightning: a bad
setting is refused in the time it takes to import torch.
"""

from equisweep.lazy import lazy_exports

_EXPORTS = {"EquiDataModule": "datamodule", "build_datamodule": "datamodule", "Regime": "regimes",
            "parse_regime": "regimes"}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
