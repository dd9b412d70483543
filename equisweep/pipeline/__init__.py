"""Training: the LightningModule, the validated run settings, and one run from settings to metrics."""

from equisweep.pipeline.config import RunConfig, load_run_config
from equisweep.pipeline.module import EquivarianceClassifier
from equisweep.pipeline.run import run_one

__all__ = ["EquivarianceClassifier", "RunConfig", "load_run_config", "run_one"]
