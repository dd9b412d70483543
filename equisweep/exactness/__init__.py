"""Exactness of G-CNNs: the static sampling-grid analysis and the measured equivariance error."""

from equisweep.exactness.measured import equivariance_error
from equisweep.exactness.static import ExactnessReport, LayerCheck, check_exactness, symmetric_grid

__all__ = ["ExactnessReport", "LayerCheck", "check_exactness", "equivariance_error", "symmetric_grid"]
