"""Every group layer alone is exactly equivariant wherever the sampling rule holds, and only there."""

import pytest
import torch

from equisweep.exactness import symmetric_grid
from equisweep.models import ClassifierHead, GroupBatchNorm, GroupConv, GroupPool, LiftingConv, SpatialPool
from tests.helpers import assert_equivariant, relative_errors

GROUPS = ["p4", "p4m"]
TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-10}


def _exact_size(k: int, s: int, p: int) -> int:
    return next(n for n in range(k + 4, k + 40) if symmetric_grid(n, k, s, p))


def _map(group_order: int, n: int, dtype: torch.dtype, channels: int = 3) -> torch.Tensor:
    return torch.randn(2, channels, group_order, n, n, dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("group", GROUPS)
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("kernel", [1, 3, 4, 5])
def test_convs_exact_where_the_rule_holds(kernel, stride, group, dtype):
    padding = kernel // 2
    n = _exact_size(kernel, stride, padding)
    lift = LiftingConv(3, 4, kernel, group, stride, padding).to(dtype)
    conv = GroupConv(3, 4, kernel, group, stride, padding).to(dtype)
    assert_equivariant(lift, torch.randn(2, 3, n, n, dtype=dtype), group, TOLERANCE[dtype])
    assert_equivariant(conv, _map(lift.group.order, n, dtype), group, TOLERANCE[dtype])


@pytest.mark.parametrize("group", GROUPS)
@pytest.mark.parametrize("kernel", [1, 3, 4, 5])
def test_stride_2_convs_broken_where_the_rule_fails(kernel, group):
    padding = kernel // 2
    n = next(n for n in range(kernel + 4, kernel + 40) if not symmetric_grid(n, kernel, 2, padding))
    conv = GroupConv(3, 4, kernel, group, 2, padding).double()
    assert max(relative_errors(conv, _map(conv.group.order, n, torch.float64), group).values()) > 1e-3


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("group", GROUPS)
@pytest.mark.parametrize(("kind", "kernel", "stride", "padding"),
                         [("max", 2, 2, 0), ("max", 3, 2, 1), ("avg", 2, 2, 0), ("avg", 3, 1, 1), ("max", 4, 2, 1)])
def test_spatial_pools_exact_where_the_rule_holds(kind, kernel, stride, padding, group, dtype):
    pool = SpatialPool(kind, kernel, stride, padding)
    n = _exact_size(kernel, stride, padding)
    order = 4 if group == "p4" else 8
    assert_equivariant(pool, _map(order, n, dtype), group, TOLERANCE[dtype])
    if stride > 1:
        broken = next(m for m in range(n + 1, n + 9) if not symmetric_grid(m, kernel, stride, padding))
        assert max(relative_errors(pool, _map(order, broken, torch.float64), group).values()) > 1e-3


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("group", GROUPS)
def test_norm_group_pool_and_heads_are_exact(group, dtype):
    order = 4 if group == "p4" else 8
    x = _map(order, 6, dtype)
    norm = GroupBatchNorm(3).to(dtype)
    norm.train()  # batch statistics: still equivariant, they are shared over the group axis
    assert_equivariant(norm, x, group, TOLERANCE[dtype])
    assert_equivariant(GroupPool("max"), x, group, TOLERANCE[dtype])
    assert_equivariant(GroupPool("mean"), x, group, TOLERANCE[dtype])
    for pool_group_first in (True, False):
        head = ClassifierHead("coset", 3, order, 5, pool_group_first).to(dtype)
        assert_equivariant(head, x, group, TOLERANCE[dtype])  # 2-D output: invariant


def test_flatten_head_is_not_invariant():
    head = ClassifierHead("flatten", 3, 4, 5).double()
    assert max(relative_errors(head, _map(4, 6, torch.float64), "p4").values()) > 1e-3


def test_bias_is_shared_over_the_group_axis():
    conv = GroupConv(2, 3, 3, "p4m", padding=1)
    with torch.no_grad():
        conv.weight.zero_()
        out = conv(torch.randn(1, 2, 8, 5, 5))
    assert torch.equal(out, conv.bias.view(1, 3, 1, 1, 1).expand_as(out))


def test_filter_bank_is_the_group_action_on_the_base_filter():
    conv = GroupConv(1, 1, 3, "p4")
    bank = conv.filter_bank().view(4, 4, 3, 3)  # [slot, input slot, k, k]
    w = conv.weight[0, 0]  # [4, 3, 3]
    expected = torch.rot90(torch.roll(w, 1, dims=0), 1, dims=(-2, -1))
    assert torch.equal(bank[1], expected)


def test_init_fan_in_counts_the_group_axis():
    conv = GroupConv(16, 16, 3, "p4m")
    fan_in = 16 * 8 * 9
    bound = (6 / fan_in) ** 0.5  # He uniform
    assert conv.weight.abs().max() <= bound
    assert conv.weight.std() > 0.8 * bound / 3**0.5


@pytest.mark.parametrize(("field", "kwargs"), [("kernel_size", {"kernel_size": 0}),
                                               ("stride", {"stride": 0}), ("padding", {"padding": -1})])
def test_bad_conv_arguments_name_the_field(field, kwargs):
    args = {"in_channels": 1, "out_channels": 1, "kernel_size": 3, **kwargs}
    with pytest.raises(ValueError, match=field):
        GroupConv(group="p4", **args)


def test_group_conv_rejects_maps_of_the_wrong_group():
    with pytest.raises(ValueError, match="expects"):
        GroupConv(2, 2, 3, "p4")(torch.zeros(1, 2, 8, 5, 5))
    with pytest.raises(ValueError, match="e2cnn"):
        GroupConv(2, 2, 3, "c8")
