"""Invariance wrappers and the soft-equivariance penalty: averaging and canonicalisation are exactly invariant
around any backbone at any size; each family at its neutral setting is its backbone; the bilinear rotation is
``grid_sample``'s in every autograd mode. The group action in the oracles is written here with ``torch.rot90`` and
``torch.flip``, never with the library's group helpers."""

import math

import pytest
import torch
import torch.nn.functional as F

from equisweep.exactness import check_exactness
from equisweep.models import build_model
from equisweep.pipeline.train.eq_penalty import orbit_penalty
from equisweep.pipeline.train.module import EquivarianceClassifier
from equisweep.rotation import rotate_bilinear

# (backbone's group, width, wrapper's group): an approximate G-CNN at 27 and 29, and a plain CNN (width 4: at 2 its
# features die and its logits are constant, invariant by accident)
CASES = [("p4", 2, "p4"), ("z2", 4, "p4m")]


def _orbit(x: torch.Tensor, mirrors: bool) -> list[torch.Tensor]:
    """Every quarter turn of ``x`` [..., N, N], and of its mirror image when ``mirrors``."""
    planes = [x, torch.flip(x, (-1,))] if mirrors else [x]
    return [torch.rot90(plane, k, (-2, -1)) for plane in planes for k in range(4)]


def _net(group: str, invariance, width: int = 4) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("p4cnn", group=group, width=width, invariance=invariance).double().eval()


@pytest.mark.parametrize(("group", "width", "wrapper_group"), CASES)
@pytest.mark.parametrize("method", ["average", "canonicalize"])
def test_averaging_and_canonicalisation_are_exactly_invariant_at_every_size(group, width, wrapper_group, method):
    net = _net(group, {"method": method, "group": wrapper_group}, width)
    mirrors = wrapper_group == "p4m"
    with torch.no_grad():
        for size in (27, 28, 29):
            x = torch.randn(2, 1, size, size, dtype=torch.float64)
            turned = _orbit(x, mirrors)
            for copy in turned[1:]:
                torch.testing.assert_close(net(copy), net(x), rtol=1e-12, atol=1e-12)
            if size != 28 or group == "z2":  # the backbone alone is approximate here: the wrapper did the work
                changes = [float((net.backbone(copy) - net.backbone(x)).abs().max()) for copy in turned[1:]]
                assert max(changes) > 1e-6, (size, changes)


@pytest.mark.parametrize("method", ["average", "canonicalize"])
def test_static_check_says_exact_with_the_reason(method):
    net = build_model("p4cnn", group="p4", width=2, invariance=method)
    report = check_exactness(net, 29, nearest=False)
    assert report.exact is True and report.unknown == ()
    assert any(f"{'group averaging' if method == 'average' else 'canonicalisation'}:" in note
               and note.endswith("the backbone alone is approximate") for note in report.notes), report.notes


def test_static_check_leaves_augerino_to_the_measurement():
    report = check_exactness(build_model("p4cnn", group="p4", width=2, invariance="augerino"), 28, nearest=False)
    assert report.exact is None
    assert report.unknown == ("unknown: augerino is measured only",)
    assert any(note.endswith("the backbone alone is exact") for note in report.notes), report.notes


def test_canonicalize_with_an_identity_canonicaliser_is_its_backbone():
    """A scorer with every weight zero scores every element alike; the tie goes to the first element, the identity,
    so the backbone sees each image as it is."""
    net = _net("z2", "canonicalize")
    with torch.no_grad():
        for parameter in net.scores.parameters():
            parameter.zero_()
    x = torch.randn(4, 1, 29, 29, dtype=torch.float64)
    for mode in (True, False):
        net.train(mode)
        torch.testing.assert_close(net(x), net.backbone(x), rtol=0, atol=0)


def test_canonicaliser_passes_the_hard_choice_forward_and_its_gradient_to_the_scorer():
    net = _net("z2", {"method": "canonicalize", "group": "p4m"}).train()
    x = torch.randn(6, 1, 28, 28, dtype=torch.float64)
    scores = net.scores(x)
    chosen = scores.argmax(-1).tolist()
    assert len(set(chosen)) > 1, chosen  # the random scorer turns back by different elements
    # the element index i (rotation i % 4, mirrored when i >= 4) acts by rot90^(i%4) after a flip when mirrored:
    # its inverse undoes the rotation first, then the flip
    expected = []
    for image, i in zip(x, chosen):
        back = torch.rot90(image, -(i % 4), (-2, -1))
        expected.append(torch.flip(back, (-1,)) if i >= 4 else back)
    canonical = net.canonical(x, scores)
    torch.testing.assert_close(canonical, torch.stack(expected), rtol=0, atol=0)
    net.backbone(canonical).pow(2).sum().backward()
    # every parameter but the last bias, which shifts every score alike and so leaves the softmax as it is (its
    # gradient is zero up to rounding)
    for name, parameter in net.scores.named_parameters():
        assert parameter.grad is not None and (parameter.grad.abs().max() > 1e-12) == (name != "conv.bias"), name


def test_augerino_at_zero_range_is_its_backbone():
    net = _net("z2", {"method": "augerino", "samples": 3})
    with torch.no_grad():
        net.range_logit.fill_(-math.inf)
    assert float(net.range.detach()) == 0
    x = torch.randn(4, 1, 28, 28, dtype=torch.float64)
    for mode in (True, False):
        net.train(mode)
        with torch.no_grad():
            torch.testing.assert_close(net(x), net.backbone(x), rtol=1e-12, atol=1e-12)


def test_a_penalty_of_zero_adds_nothing_and_a_positive_one_adds_lambda_times_the_orbit_change():
    x = torch.randn(4, 1, 28, 28, dtype=torch.float64)
    terms = {}
    for weight in (0.0, 0.5):
        torch.manual_seed(0)
        backbone = build_model("p4cnn", group="z2", width=2).double()
        module = EquivarianceClassifier(backbone, 10, eq_penalty=weight).double()
        logits = module(x)
        torch.manual_seed(1)  # the penalty's draw of a group element
        terms[weight] = module.method_terms(x, logits)
    assert terms[0.0] == 0.0  # the loss is the cross-entropy itself
    torch.manual_seed(1)
    expected = 0.5 * orbit_penalty(module, x, logits, module.orbit_group)
    assert float(expected) > 0
    torch.testing.assert_close(terms[0.5], expected, rtol=0, atol=0)


def _grid_sample_rotation(x: torch.Tensor, angles: torch.Tensor, background: float) -> torch.Tensor:
    """The oracle: ``affine_grid`` + ``grid_sample`` (zero padding, so the background is shifted to zero)."""
    theta = torch.deg2rad(angles)
    cos, sin, zero = torch.cos(theta), torch.sin(theta), torch.zeros_like(theta)
    matrix = torch.stack([torch.stack([cos, -sin, zero], -1), torch.stack([sin, cos, zero], -1)], -2)
    grid = F.affine_grid(matrix, list(x.shape), align_corners=False)
    return F.grid_sample(x - background, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + background


@pytest.mark.parametrize(("height", "width"), [(9, 9), (8, 11)])
@pytest.mark.parametrize("background", [0.0, -0.4])
def test_bilinear_rotation_is_grid_samples(height, width, background):
    x = torch.randn(5, 2, height, width, dtype=torch.float64)
    angles = torch.tensor([0.0, 90.0, -33.3, 181.0, 7.5], dtype=torch.float64)
    torch.testing.assert_close(rotate_bilinear(x, angles, background), _grid_sample_rotation(x, angles, background),
                               rtol=1e-12, atol=1e-12)
    # a quarter turn of a square image is counter-clockwise, as torch.rot90
    if height == width:
        torch.testing.assert_close(rotate_bilinear(x, angles, background)[1], torch.rot90(x[1], 1, (-2, -1)),
                                   rtol=1e-12, atol=1e-12)


def test_bilinear_rotation_runs_in_forward_mode():
    x = torch.randn(3, 1, 10, 10, dtype=torch.float64)
    angles = torch.tensor([12.0, -40.0, 95.0], dtype=torch.float64)
    image_tangent = torch.randn_like(x)
    # affine in the image: its derivative along a tangent is the tangent turned over a zero background
    _, along_image = torch.func.jvp(lambda images: rotate_bilinear(images, angles, 0.3), (x,), (image_tangent,))
    torch.testing.assert_close(along_image, _grid_sample_rotation(image_tangent, angles, 0.0), rtol=1e-12, atol=1e-12)
    # in the angle: the central difference of grid_sample's rotation (away from pixel-grid kinks at these angles)
    _, along_angle = torch.func.jvp(lambda a: rotate_bilinear(x, a, 0.3), (angles,), (torch.ones_like(angles),))
    step = 1e-6
    ahead, behind = (_grid_sample_rotation(x, angles + shift, 0.3) for shift in (step, -step))
    difference = (ahead - behind) / (2 * step)
    torch.testing.assert_close(along_angle, difference, rtol=1e-5, atol=1e-6)
