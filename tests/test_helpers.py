"""The shared equivariance assertion must be able to fail."""

import pytest
import torch

from equisweep.models import LiftingConv
from tests.helpers import assert_equivariant


def test_assert_equivariant_passes_on_an_exact_layer():
    conv = LiftingConv(1, 2, 3, "p4m", stride=2, padding=1).double()
    assert_equivariant(conv, torch.randn(2, 1, 9, 9, dtype=torch.float64), "p4m", 1e-10)


def test_assert_equivariant_fails_on_a_stride_2_conv_at_even_size():
    conv = LiftingConv(1, 2, 3, "p4", stride=2, padding=1).double()
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(conv, torch.randn(2, 1, 8, 8, dtype=torch.float64), "p4", 1e-3)


def test_assert_equivariant_fails_on_a_plain_conv():
    conv = torch.nn.Conv2d(1, 2, 3, padding=1).double()
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(conv, torch.randn(2, 1, 9, 9, dtype=torch.float64), "p4", 1e-3)
