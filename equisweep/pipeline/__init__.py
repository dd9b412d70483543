"""Training: the LightningModule, one run, and (later) the sweep and the report."""

from equisweep.pipeline.config import RunConfig, load_run_config
from equisweep.pipeline.module import EquivarianceClassifier
from equisweep.pipeline.run import run_one

__all__ = ["EquivarianceClassifier", "RunConfig", "load_run_config", "run_one"]
