"""The static analysis: the rule, the tracer on real models, and agreement with the measured error."""

import pytest
import torch
import torch.nn.functional as F
import torchvision
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from torch import nn

from equisweep.errors import UserError
from equisweep.exactness import check_exactness, equivariance_error, symmetric_grid
from equisweep.models import GlobalAvgPool, GroupConv, GroupPool, LiftingConv, SpatialPool, build_model
from equisweep.models.subsampling import AdaptiveStride


@pytest.mark.parametrize(("n", "k", "s", "p", "expected"), [
    (33, 3, 2, 1, True), (32, 3, 2, 1, False), (225, 1, 2, 0, True), (224, 1, 2, 0, False),
    (28, 2, 2, 0, True), (27, 2, 2, 0, False), (29, 2, 2, 0, False), (17, 5, 1, 0, True),
])
def test_rule_examples(n, k, s, p, expected):
    assert symmetric_grid(n, k, s, p) is expected


@given(st.integers(1, 60), st.integers(1, 7), st.integers(1, 4), st.integers(0, 3))
def test_general_rule_reduces_to_the_formula_for_symmetric_floor_mode(n, k, s, p):
    assume(n + 2 * p >= k)
    assert symmetric_grid(n, k, s, p) == ((n + 2 * p - k) % s == 0)


def test_torchvision_resnet18_exact_at_225_not_224():
    model = torchvision.models.resnet18()
    assert not check_exactness(model, 224).exact
    report = check_exactness(model, 225)
    assert report.exact and {layer.name for layer in report.layers} >= {"conv1", "maxpool", "layer2.0.downsample.0"}
    assert report.nearest_exact_sizes == (193, 257)


def test_report_names_the_breaking_layers_and_nearest_sizes():
    report = check_exactness(build_model("resnet44", "p4", width=2), 32)
    assert not report.exact
    assert {layer.name for layer in report.breaking_layers} == {
        "layers.1.0.conv1", "layers.1.0.shortcut.0", "layers.2.0.conv1", "layers.2.0.shortcut.0"}
    first = report.layers[0]
    assert (first.kind, first.stride, first.in_size) == ("conv", (2, 2), (32, 32))
    assert report.nearest_exact_sizes == (29, 33)


class _Padded(nn.Module):
    def __init__(self, pad: tuple[int, int, int, int]) -> None:
        super().__init__()
        self.pad = pad
        self.conv = LiftingConv(1, 2, 3, "p4", stride=2)

    def forward(self, x):
        return self.conv(F.pad(x, self.pad))


def test_asymmetric_functional_padding_breaks_exactness():
    report = check_exactness(_Padded((0, 1, 0, 1)), 32)  # 33 after padding: the conv alone would be exact
    assert not report.exact and report.breaking_layers[0].kind == "pad"
    assert check_exactness(_Padded((1, 1, 1, 1)), 31).exact


class _Pad(nn.Module):
    """``F.pad`` with (left, right, top, bottom), as a layer."""

    def __init__(self, pad: tuple[int, int, int, int]) -> None:
        super().__init__()
        self.pad = pad

    def forward(self, x):
        return F.pad(x, self.pad)


def _lift_padded(group: str, pad: tuple[int, int, int, int], conv_padding: tuple[int, int]) -> nn.Module:
    """Padding, a stride-1 lifting conv, then invariant pooling: the logits are exact iff the padding is."""
    lift = LiftingConv(1, 4, 3, group)
    lift.padding = conv_padding  # the layer takes one int; F.conv2d takes a pair (rows, columns)
    return nn.Sequential(_Pad(pad), lift, nn.ReLU(), GroupConv(4, 4, 3, group, padding=1), GlobalAvgPool(),
                         GroupPool("max")).double()


@pytest.mark.parametrize(("pad", "conv_padding", "kind"), [
    ((1, 1, 2, 2), (1, 1), "pad"),  # F.pad(x, (1, 1, 2, 2)): columns by 1, rows by 2
    ((0, 0, 0, 0), (1, 2), "conv"),  # a stride-1 conv with padding=(1, 2)
])
def test_padding_that_differs_between_the_axes_breaks_quarter_turns_only(pad, conv_padding, kind):
    x = torch.randn(2, 1, 28, 28, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for group in ("p4", "p4m"):  # a quarter turn swaps the axes: each axis symmetric is not enough
        model = _lift_padded(group, pad, conv_padding)
        report = check_exactness(model, 28, group=group, nearest=False)
        assert not report.exact and [layer.kind for layer in report.breaking_layers] == [kind]
        assert equivariance_error(model, x, group, layers=[])["output"]["max"] > 1e-3
    for group in ("d1", "d2", "c2"):  # mirrors and half turns keep each axis in place
        model = _lift_padded(group, pad, conv_padding)
        assert check_exactness(model, 28, group=group, nearest=False).exact
        assert equivariance_error(model, x, group, layers=[])["output"]["max"] < 1e-10


def test_ceil_mode_pool():
    model = nn.Sequential(LiftingConv(1, 2, 3, "p4", padding=1), SpatialPool("max", 2, ceil_mode=True))
    assert check_exactness(model, 28).exact and not check_exactness(model, 27).exact


@pytest.mark.filterwarnings("ignore:Using padding=.same.")
def test_conv_with_same_padding_and_even_kernel_is_not_exact():
    model = nn.Sequential(nn.Conv2d(1, 2, 4, padding="same"))
    report = check_exactness(model, 28)
    assert not report.exact and report.layers[0].padding == (1, 2, 1, 2)


def test_non_square_input_is_not_exact_for_rotations():
    report = check_exactness(build_model("p4cnn", "p4"), (28, 30))
    assert not report.exact and any("square" in note for note in report.notes)


def test_z2_models_are_checked_for_the_p4_grid():
    report = check_exactness(build_model("p4cnn", "z2"), 28)
    assert report.exact and report.group == "z2" and "sampling grid" in report.notes[0]


def test_too_small_input_names_the_layer_and_the_smallest_size():
    with pytest.raises(UserError, match=r"input_size: 5 is too small .*'block7.0'.* smallest size that fits is 8"):
        check_exactness(build_model("p4cnn", "p4"), 5)
    with pytest.raises(UserError, match="must be positive"):
        check_exactness(build_model("p4cnn", "p4"), 0)


def test_trace_leaves_the_model_as_it_was():
    model = build_model("p4cnn", "p4")
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    check_exactness(model, 28)
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# Property: for random stacks of convs, pools and pads, the static verdict equals the measured one. Rows and
# columns get their own padding, so the stacks include ops padded differently on the two axes. "adaptive ..."
# layers are the op at stride 1 followed by adaptive subsampling (their stride is ignored).
layer = st.tuples(st.sampled_from(["conv", "max", "avg", "pad", "adaptive conv", "adaptive max", "adaptive avg"]),
                  st.integers(1, 5), st.integers(1, 3),
                  st.integers(0, 2), st.integers(0, 2), st.booleans())


def _stack(spec: list[tuple[str, int, int, int, int, bool]]) -> nn.Module:
    """Random layers; padding stays below the kernel so every conv window holds real pixels (a window of pure
    padding outputs the bias wherever it sits, which makes even a broken grid look exact)."""
    modules: list[nn.Module] = [LiftingConv(1, 3, 3, "p4m", padding=1)]
    for kind, k, s, rows, columns, ceil in spec:
        adaptive = kind.startswith("adaptive ")
        kind, s = kind.removeprefix("adaptive "), 1 if adaptive else s
        if kind == "conv":
            op = GroupConv(3, 3, k, "p4m", stride=s)
            op.padding = (min(rows, k - 1), min(columns, k - 1))  # the layer takes one int; F.conv2d a pair
        elif kind == "pad":
            op = _Pad((columns, columns, rows, rows))
        else:
            op = SpatialPool(kind, k, s, (min(rows, k // 2), min(columns, k // 2)), ceil_mode=ceil)
        modules.append(AdaptiveStride(op) if adaptive else op)
    return nn.Sequential(*modules).double()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(layer, min_size=1, max_size=4), st.integers(5, 40))
def test_static_verdict_agrees_with_measured_error(spec, n):
    torch.manual_seed(0)
    model = _stack(spec)
    try:
        report = check_exactness(model, n, group="p4m", nearest=False)
    except UserError:
        assume(False)
    torch.manual_seed(n)
    x = torch.randn(2, 1, n, n, dtype=torch.float64)
    # The rule is about grids on generic maps. Pool windows that (alone or stacked) cover a whole map make it
    # spatially constant, or reduce it to one global value, and then no sampling can break anything: keep
    # every map at least 2x2 and not constant.
    with torch.no_grad():
        maps = [y := x] + [y := module(y) for module in model]
    assume(all(min(y.shape[-2:]) >= 2 and bool((y.amax((-2, -1)) > y.amin((-2, -1))).any()) for y in maps))
    if any(y.shape[-2] != y.shape[-1] for y in maps):
        # A quarter turn maps an HxW map to WxH: a layer with a non-square output cannot commute with it.
        measured = float("inf")
    else:
        # Every layer counts: a final global max can hide a broken grid on one input, a broken layer cannot.
        errors = equivariance_error(model, x, "p4m", layers=[name for name, _ in model.named_children()])
        measured = max(layer["max"] for layer in errors.values())
    assert report.exact == (measured < 1e-6), (report.to_table(), spec)


@pytest.mark.parametrize("group", ["c8", "d8"])
def test_c8_models_are_approximate_at_every_size_and_say_why(group):
    model = build_model("p4cnn", group, backend="e2cnn", width=2)
    for n in (27, 28, 29):
        report = check_exactness(model, n)
        assert not report.exact and report.nearest_exact_sizes == ()
        assert any("not symmetries of the pixel grid" in note and "every input size" in note for note in report.notes)


@pytest.mark.parametrize("group", ["c4", "d4"])
def test_e2cnn_models_follow_the_same_rule(group):
    model = build_model("resnet44", group, backend="e2cnn", width=2)
    assert check_exactness(model, 33).exact and not check_exactness(model, 32).exact
