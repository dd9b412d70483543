"""LightningDataModules with training-symmetry regimes; the evaluation views live in ``pipeline.module``."""

from equisweep.datamodules.datamodule import EquiDataModule, build_datamodule
from equisweep.datamodules.regimes import Regime, parse_regime

__all__ = ["EquiDataModule", "Regime", "build_datamodule", "parse_regime"]
