"""Training, sweeps and the report: the LightningModule, the validated run settings, one run from settings to
metrics, the Ray Tune sweep, and the report that reads its tables.

Names load on first use, so the report and ``equisweep sweep --status`` never import torch or Lightning.
"""

import importlib

_EXPORTS = {"EquivarianceClassifier": "module", "RunConfig": "config", "load_run_config": "config",
            "run_one": "run"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'equisweep.pipeline' has no attribute {name!r}")
    return getattr(importlib.import_module(f"equisweep.pipeline.{_EXPORTS[name]}"), name)
