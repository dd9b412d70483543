"""Exactness of G-CNNs: the static sampling-grid analysis and the measured equivariance error."""

from equisweep.exactness.grid import symmetric_grid
from equisweep.exactness.measured import equivariance_error
from equisweep.exactness.report import ExactnessReport, LayerCheck
from equisweep.exactness.static import check_exactness

__all__ = ["ExactnessReport", "LayerCheck", "check_exactness", "equivariance_error", "symmetric_grid"]
