"""equisweep: exact versus approximate equivariance in group-equivariant CNNs."""

__version__ = "0.1.0"
