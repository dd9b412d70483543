"""Training, sweeps and the report, one room per job, imported only downward (report -> sweep -> train):

- ``vocabulary.py``: the names all three share (metrics, arms), free of torch,
- ``train/``: one run (the LightningModule, run settings, ``run_one``, callbacks, W&B run logging),
- ``sweep/``: many runs (sweep specs, the Ray Tune driver, Optuna per cell, the result tables),
- ``report/``: the verdict statistics, figures, the report, and tables rebuilt from W&B runs.

The names users import load on first use, so the report and ``equisweep sweep --status`` never import torch or
Lightning.
"""

from equisweep.lazy import lazy_exports

_EXPORTS = {"EquivarianceClassifier": "train.module", "RunConfig": "train.config", "load_run_config": "train.config",
            "run_one": "train.run"}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
