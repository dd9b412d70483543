"""The e2cnn backend in our layout: its group-axis mapping, per-layer equivariance, exactness and plumbing."""

from collections.abc import Callable

import numpy as np
import pytest
import torch
from scipy.ndimage import rotate
from torch import Tensor, nn

from equisweep.errors import UserError
from equisweep.groups import get_group
from equisweep.models import build_model
from equisweep.models._e2cnn_compat import import_e2cnn
from equisweep.models.e2cnn_backend import E2Conv, E2LayerSet, fibre_order
from tests.helpers import assert_equivariant, relative_errors

EXACT = 1e-5  # float32 rounding on exact layers stays near 1e-7..1e-6
BROKEN = 1e-3


def _maps_at(model: nn.Module, names: list[str]) -> dict[str, Callable[[Tensor], Tensor]]:
    """``{name: x -> output of submodule name}`` (through forward hooks), so intermediate maps can be checked. One
    forward, without gradients, serves every name for a given input: ResNet-44's e2cnn filters are expanded anew
    each time."""
    modules = dict(model.named_modules())
    seen: dict[bytes, dict[str, Tensor]] = {}

    def maps(x: Tensor) -> dict[str, Tensor]:
        key = x.numpy().tobytes()
        if key not in seen:
            captured: dict[str, Tensor] = {}
            handles = [modules[name].register_forward_hook(
                lambda m, a, out, name=name: captured.__setitem__(name, out)) for name in names]
            try:
                with torch.no_grad():
                    model(x)
            finally:
                for handle in handles:
                    handle.remove()
            seen[key] = captured
        return seen[key]

    return {name: lambda x, name=name: maps(x)[name] for name in names}


def _map_at(model: nn.Module, name: str) -> Callable[[Tensor], Tensor]:
    return _maps_at(model, [name])[name]


def _tiny_stack(group: str) -> nn.Sequential:
    """lift k3/s1/p1 -> conv k3/s2/p1 -> coset head: exact iff the conv sees an odd size."""
    layers = E2LayerSet(get_group(group))
    return nn.Sequential(layers.lift(1, 3, 3, padding=1), nn.ReLU(), layers.conv(3, 3, 3, stride=2, padding=1),
                         layers.head("coset", 3, 5)).eval()


@pytest.mark.parametrize("group", ["c2", "c3", "c4", "c8", "d3", "d4", "d8"])
def test_fibre_order_is_the_identity_for_e2cnn_default_gspaces(group):
    assert fibre_order(get_group(group), E2LayerSet(group).gspace) == list(range(get_group(group).order))


@pytest.mark.parametrize("group", ["c4", "c8", "d4", "d6"])
def test_fibre_order_turns_e2cnn_regular_representation_into_ours(group):
    # e2cnn's own ρ(φ(g)) must permute the fibre exactly as groups.py's (g·f)[h] = f[g⁻¹h].
    g, gspace = get_group(group), E2LayerSet(group).gspace
    order = fibre_order(g, gspace)
    for a in g.elements:
        rho = gspace.regular_repr(gspace.fibergroup.elements[order[g.index(a)]])  # (ρf)[i] = Σ_j ρ[i, j] f[j]
        expected = np.zeros((g.order, g.order))
        for h, source in enumerate(g.group_axis_permutation(a)):
            expected[order[h], order[source]] = 1
        assert np.allclose(rho, expected, atol=1e-9)


@pytest.mark.parametrize("group", ["c4", "c8", "d4", "d8"])
def test_e2cnn_moves_the_plane_like_groups_py(group):
    # The geometric half of the mapping: e2cnn's action of φ(g) on an image is our act_on_image(g) on the grid.
    e2cnn, g = import_e2cnn(), get_group(group)
    gspace = E2LayerSet(group).gspace
    image = torch.randn(1, 1, 5, 5)
    field = e2cnn.nn.FieldType(gspace, [gspace.trivial_repr])
    order = fibre_order(g, gspace)
    for a in g.grid_elements:
        moved = e2cnn.nn.GeometricTensor(image, field).transform(gspace.fibergroup.elements[order[g.index(a)]])
        assert torch.equal(moved.tensor.float(), g.act_on_image(a, image))


def test_c8_slot_one_holds_the_filter_turned_45_degrees_counter_clockwise():
    # Grid rotations cannot tell slot 1 (45°) from slot 5 (225°): both square to the 90° slot. Compare filters.
    image = np.random.default_rng(0).standard_normal((7, 7))
    assert np.allclose(rotate(image, 90, axes=(-2, -1), reshape=False, order=1), np.rot90(image, 1, axes=(-2, -1)))
    lift = E2LayerSet("c8").lift(1, 1, 11, padding=5)
    bank = lift.conv.expand_parameters()[0][:, 0].detach().double().numpy()  # [8, 11, 11]: slot h = filter moved by h
    turned = rotate(bank[0], 45, axes=(-2, -1), reshape=False, order=3)  # same sense as torch.rot90(k=1)
    error = [np.linalg.norm(turned - bank[h]) / np.linalg.norm(bank[h]) for h in range(8)]
    assert error[1] < 0.3 and error[1] < min(error[:1] + error[2:]) / 3


def test_a_flip_axis_off_our_mirror_gives_a_real_permutation_and_stays_equivariant():
    # With axis=0 e2cnn's f is an up-down flip, so our left-right m is its r^2 f: the layers must permute.
    g = get_group("d4")
    gspace = import_e2cnn().gspaces.FlipRot2dOnR2(4, axis=0.0)
    assert fibre_order(g, gspace) == [0, 1, 2, 3, 6, 7, 4, 5]
    lift = E2Conv(gspace, g, 1, 2, 3, padding=1, lifting=True).double()
    conv = E2Conv(gspace, g, 2, 2, 3, padding=1).double()
    assert_equivariant(lambda x: conv(lift(x)), torch.randn(2, 1, 9, 9, dtype=torch.float64), g, 1e-10)


@pytest.mark.parametrize("group", ["c4", "d4", "c8", "d3"])
@pytest.mark.parametrize(("kernel", "stride", "padding", "size"), [(3, 1, 1, 8), (4, 1, 0, 9), (3, 2, 1, 9),
                                                                    (1, 2, 0, 9)])
def test_layers_commute_with_grid_elements_in_our_layout(group, kernel, stride, padding, size):
    g = get_group(group)
    layers = E2LayerSet(g)
    lift = layers.lift(2, 3, kernel, stride, padding, bias=True).double()
    conv = layers.conv(3, 2, kernel, stride, padding, bias=True).double()
    x = torch.randn(2, 2, size, size, dtype=torch.float64)
    assert_equivariant(lift, x, g, 1e-10)
    assert_equivariant(conv, lift(x).detach(), g, 1e-10)
    lifted = (size + 2 * padding - kernel) // stride + 1
    out = (lifted + 2 * padding - kernel) // stride + 1
    assert conv(lift(x)).shape == (2, 2, g.order, out, out)


@pytest.mark.parametrize("group", ["c4", "d4"])
@pytest.mark.parametrize("name", ["p4cnn", "resnet44"])
def test_models_build_and_train_a_step(name, group):
    model = build_model(name, group=group, backend="e2cnn", width=2, num_classes=7)
    assert model.group == get_group(group)
    logits = model(torch.randn(2, 1, 28, 28))
    assert logits.shape == (2, 7) and torch.isfinite(logits).all()
    logits.sum().backward()
    grads = [p.grad for n, p in model.named_parameters() if n.endswith("conv.weights")]
    assert grads and all(grad is not None and torch.isfinite(grad).all() for grad in grads)


@pytest.mark.parametrize("group", ["c4", "d4"])
def test_tiny_stride_2_stack_is_invariant_at_odd_size_only(group):
    model = _tiny_stack(group)
    assert max(relative_errors(model, torch.randn(2, 1, 9, 9), group).values()) < 1e-4
    assert max(relative_errors(model, torch.randn(2, 1, 10, 10), group).values()) > BROKEN


# Hidden maps of ResNet-44: the stem, a stride-2 conv and its 1x1 stride-2 shortcut, a later stage, the final BN.
RESNET_MAPS = ["stem", "layers.1.0.conv1", "layers.1.0.shortcut", "layers.2", "final"]


@pytest.mark.parametrize("group", ["c4", "d4"])
def test_resnet44_is_exact_at_33_in_every_hidden_map_and_the_logits(group):
    model = build_model("resnet44", group=group, backend="e2cnn", width=2).eval()
    x = torch.randn(2, 1, 33, 33)
    for at in _maps_at(model, RESNET_MAPS).values():
        assert_equivariant(at, x, group, EXACT)
    assert max(relative_errors(model, x, group).values()) < 1e-4


@pytest.mark.parametrize("group", ["c4", "d4"])
def test_resnet44_is_approximate_at_32(group):
    model = build_model("resnet44", group=group, backend="e2cnn", width=2).eval()
    x = torch.randn(2, 1, 32, 32)
    assert_equivariant(_map_at(model, "stem"), x, group, EXACT)  # stride 1: exact at any size
    assert max(relative_errors(_map_at(model, "layers.1.0.conv1"), x, group).values()) > BROKEN
    assert max(relative_errors(model, x, group).values()) > BROKEN


def test_p4cnn_with_its_4x4_conv_is_exact_at_28():
    model = build_model("p4cnn", group="d4", backend="e2cnn", width=2).eval()
    x = torch.randn(2, 1, 28, 28)
    assert_equivariant(_map_at(model, "block7"), x, "d4", EXACT)  # 2x2 pool at 28, then the 4x4 conv
    assert max(relative_errors(model, x, "d4").values()) < 1e-4


def test_c8_maps_are_exact_on_the_four_grid_rotations_at_odd_size():
    # Only r0, r90, r180, r270 (C8 elements 0, 2, 4, 6) move the pixel grid onto itself. e2cnn samples its
    # filters analytically at the grid points, which quarter turns permute, so these hold to float rounding;
    # the 45° elements are not checked (no exact action on pixels).
    group = get_group("c8")
    assert [group.index(a) for a in group.grid_elements] == [0, 2, 4, 6]
    model = build_model("resnet44", group="c8", backend="e2cnn", width=2).eval()
    x = torch.randn(2, 1, 17, 17)
    for at in _maps_at(model, RESNET_MAPS).values():
        assert_equivariant(at, x, group, EXACT)
    assert max(relative_errors(model, torch.randn(2, 1, 16, 16), group).values()) > BROKEN


def test_state_dict_keys_do_not_depend_on_the_mode_and_loading_in_eval_takes_effect():
    # R2Conv's own eval mode caches its filter as a buffer; E2Conv keeps it in training mode to avoid both issues.
    source = build_model("p4cnn", group="d4", backend="e2cnn", width=2)
    keys = set(source.state_dict())
    assert not [key for key in keys if key.endswith(("filter", "expanded_bias"))]  # no expanded copies saved
    source.eval()
    assert set(source.state_dict()) == keys
    target = build_model("p4cnn", group="d4", backend="e2cnn", width=2).eval()
    target.load_state_dict(source.state_dict())
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(target(x), source(x))


def test_models_do_not_share_basis_buffers():
    # e2cnn's basis cache would hand one module to every matching layer; .double() on one model would leak.
    first = build_model("p4cnn", group="c4", backend="e2cnn", width=2)
    build_model("p4cnn", group="c4", backend="e2cnn", width=2).double()
    assert first(torch.randn(1, 1, 28, 28)).dtype == torch.float32


@pytest.mark.parametrize("group", ["z2", "c1", "d1"])
def test_trivial_rotation_groups_are_refused_naming_the_field(group):
    with pytest.raises(UserError, match=r"^group: .*N >= 2"):
        E2LayerSet(group)


def test_bad_constructor_arguments_and_inputs_raise_value_errors():
    layers = E2LayerSet("c4")
    with pytest.raises(ValueError, match="kernel_size"):
        layers.conv(2, 2, 0)
    with pytest.raises(ValueError, match="stride"):
        layers.lift(1, 2, 3, stride=0)
    with pytest.raises(ValueError, match="in_channels"):
        layers.conv(0, 2, 3)
    with pytest.raises(ValueError, match="gspace"):
        E2Conv(layers.gspace, get_group("d4"), 1, 1, 3)
    with pytest.raises(ValueError, match=r"expects \[B, 2, 4, H, W\]"):
        layers.conv(2, 2, 3)(torch.randn(1, 2, 8, 8, 8))
    with pytest.raises(ValueError, match=r"expects \[B, 1, H, W\]"):
        layers.lift(1, 2, 3)(torch.randn(1, 1, 4, 8, 8))
