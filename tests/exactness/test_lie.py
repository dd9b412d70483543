"""The Lie-derivative error: the input tangent is the derivative of the datamodules' bilinear rotation, the network's
derivative matches a central finite difference and the closed form of a linear model, and it measures continuous
rotation, which an exact p4 net does not commute with."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from equisweep.datamodules.regimes import rotate
from equisweep.datamodules.sources import get_source, load_tensors
from equisweep.exactness import equivariance_error
from equisweep.exactness.lie import lie_derivative, rotation_tangent
from equisweep.models import build_model
from equisweep.models.pooling import SpatialPool

STEP = 1e-7  # radians, for the central differences


def _digits(count: int, size: int = 28) -> torch.Tensor:
    images, _ = load_tensors(get_source("mnist5k"), None, seed=0)["test"]
    x = (images[:count].double() / 255 - 0.1307) / 0.3081
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False) if size != 28 else x


def _central(fn, x: torch.Tensor, background: float = 0.0) -> torch.Tensor:
    """(fn(R_h x) - fn(R_-h x)) / 2h through the datamodules' own rotation (degrees)."""
    degrees = torch.full((x.shape[0],), float(torch.rad2deg(torch.tensor(STEP))), dtype=torch.float64)
    with torch.no_grad():
        return (fn(rotate(x, degrees, background)) - fn(rotate(x, -degrees, background))) / (2 * STEP)


@pytest.mark.parametrize("size", [28, 29])
def test_tangent_is_the_derivative_of_the_bilinear_rotation(size):
    background = -0.4242  # normalised black: what comes in at the corners
    x = _digits(4, size)
    difference = _central(lambda z: z, x, background)
    tangent = rotation_tangent(x, background)
    assert (tangent - difference).abs().max() < 1e-3 * tangent.abs().max()
    assert tangent.abs().max() > 1  # a digit really moves under rotation


def test_linear_model_has_the_closed_form():
    torch.manual_seed(0)
    x = _digits(5)
    linear = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10)).double()
    with torch.no_grad():
        probs = F.softmax(linear(x), -1)  # [B, K]
        moved = rotation_tangent(x).flatten(1) @ linear[1].weight.T  # W v: the weights on the image's derivative
        expected = probs * moved - probs * (probs * moved).sum(-1, keepdim=True)  # softmax's Jacobian on W v
    assert lie_derivative(linear, x)["output"] == pytest.approx(float(expected.abs().mean()), rel=1e-10)


def _train(group: str, steps: int = 150) -> nn.Module:
    """A P4CNN trained on upright digits with a plain loop (Adam, batch 32): enough to be a real classifier."""
    torch.manual_seed(0)
    images, labels = load_tensors(get_source("mnist5k"), None, seed=0)["train"]
    x = (images.float() / 255 - 0.1307) / 0.3081
    model = build_model("p4cnn", group=group, dropout=0.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(steps):
        batch = torch.randint(len(x), (32,), generator=torch.Generator().manual_seed(step))
        loss = F.cross_entropy(model(x[batch]), labels[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.double().eval()


@pytest.fixture(scope="module")
def trained() -> dict[str, nn.Module]:
    return {group: _train(group) for group in ("z2", "p4")}


def _tied_max_pools(model: nn.Module, x: torch.Tensor) -> int:
    """How many max-pool windows hold their largest value twice (a positive one: equal zeros after a ReLU all have
    derivative 0). At such a tie the net has no derivative, and which value the forward-mode pass follows is up
    to the CPU's pooling kernel."""
    inputs = []
    hooks = [module.register_forward_hook(lambda module, args, out: inputs.append((module, args[0])))
             for module in model.modules() if isinstance(module, SpatialPool) and module.kind == "max"]
    with torch.no_grad():
        model(x)
    for hook in hooks:
        hook.remove()
    ties = 0
    for pool, planes in inputs:
        windows = F.unfold(planes.flatten(1, -3), pool.kernel_size, padding=pool.padding, stride=pool.stride)
        top = windows.unflatten(1, (-1, pool.kernel_size**2)).topk(2, dim=2).values  # [B, planes, 2, windows]
        ties += int(((top[:, :, 0] == top[:, :, 1]) & (top[:, :, 0] > 0)).sum())
    return ties


@pytest.mark.slow
@pytest.mark.trains
def test_trained_net_matches_a_central_finite_difference(trained):
    # Where the net is differentiable: on plain digits the flat background ties many of the max-pool
    # windows; a little pixel noise (std 0.01, where the normalised digits span -0.42 to 2.8) leaves none.
    model = trained["p4"]
    assert _tied_max_pools(model, _digits(8)) > 0
    x = _digits(8) + 0.01 * torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert _tied_max_pools(model, x) == 0
    difference = _central(lambda z: F.softmax(model(z), -1), x).abs().mean()
    assert lie_derivative(model, x)["output"] == pytest.approx(float(difference), rel=1e-4)


@pytest.mark.slow
@pytest.mark.trains
def test_lie_derivative_sees_what_the_quarter_turn_error_cannot(trained):
    # An exact p4 net is invariant to quarter turns (orbit error at rounding level) and still moves under a small
    # rotation; a plain CNN has both errors. (Trained upright, the two nets' Lie derivatives are of the same size:
    # the softmax's derivative also grows with the net's uncertainty, and the p4 net is the less certain one here.)
    x = _digits(64)
    labels = load_tensors(get_source("mnist5k"), None, seed=0)["test"][1][:64]
    for group, model in trained.items():
        with torch.no_grad():
            # learned the digits: chance is 0.1; 0.77 to 0.97 over seeds and SIMD kernel paths (`make test-isa`)
            assert (model(x).argmax(-1) == labels).double().mean() > 0.5
        orbit = equivariance_error(model, x, "p4")["output"]["max"]
        lee = lie_derivative(model, x, layers=["block1"])
        assert lee["output"] > 1e-3 and lee["block1"] > 1e-3
        assert (orbit < 1e-10) if group == "p4" else (orbit > 1e-3)
