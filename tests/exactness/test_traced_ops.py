"""The static check on ops beyond convs and pools: it decides what it can prove and says "unknown" for the rest,
and it never says EXACT where a float64 measurement sees an error.

The oracle is written here, from torch.rot90 and torch.flip, not with the package's group helpers. Every net maps
a map to a map with isotropic filters (averaged over the dihedral group), so with a symmetric grid each layer
commutes with every rotation and mirror of the plane."""

import json
import re

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from equisweep.errors import UserError
from equisweep.exactness import check_exactness
from equisweep.models.subsampling import AdaptiveStride

CHANNELS = 2


def _dihedral(x: torch.Tensor) -> list[torch.Tensor]:
    """The eight rotations and mirrors of the plane of ``x``, identity first."""
    return [torch.rot90(torch.flip(x, dims=(-1,)) if mirror else x, k, dims=(-2, -1))
            for mirror in (False, True) for k in range(4)]


def measured_error(net: nn.Module, n: int) -> float:
    """max over the dihedral group of ||f(g x) - g f(x)|| / ||f(x)||, in float64 on random images."""
    x = torch.randn(2, 1, n, n, dtype=torch.float64, generator=torch.Generator().manual_seed(n))
    with torch.no_grad():
        y = net(x)
        moved = [net(gx) for gx in _dihedral(x)]
    errors = [float("inf") if a.shape != b.shape else float((a - b).norm() / y.norm())
              for a, b in zip(moved, _dihedral(y))]
    return max(errors)


def runs_at(net: nn.Module, n: int) -> bool:
    """Whether ``net`` maps an n x n input to a non-empty output (a map that shrinks to nothing has no error)."""
    try:
        with torch.no_grad():
            return net(torch.zeros(1, 1, n, n, dtype=torch.float64)).numel() > 0
    except RuntimeError:
        return False


class Op(nn.Module):
    """A functional op as a layer."""

    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


class MaxPoolWithIndices(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(3, 2, padding=1, return_indices=True)

    def forward(self, x):
        return self.pool(x)[0]


def _unfold_fold(x):
    """Cut the map into 2x2/2 patches and put them back: at an odd size the last row and column fall out."""
    return F.fold(F.unfold(x, 2, stride=2), x.shape[-2:], 2, stride=2)


OPS = {  # name: a map-to-map layer on CHANNELS channels
    "conv": lambda: nn.Conv2d(CHANNELS, CHANNELS, 3, padding=1),
    "conv s2": lambda: nn.Conv2d(CHANNELS, CHANNELS, 3, stride=2, padding=1),
    "max pool": lambda: nn.MaxPool2d(2),
    "adaptive": lambda: AdaptiveStride(nn.Conv2d(CHANNELS, CHANNELS, 3, padding=1)),
    "adaptive pool": lambda: nn.AdaptiveAvgPool2d(3),
    "lp pool": lambda: nn.LPPool2d(2, 2),
    "max pool indices": MaxPoolWithIndices,
    "nearest x2": lambda: Op(lambda x: F.interpolate(x, scale_factor=2)),
    "nearest /2": lambda: Op(lambda x: F.interpolate(x, scale_factor=0.5)),
    "bilinear /2": lambda: Op(lambda x: F.interpolate(x, scale_factor=0.5, mode="bilinear")),
    "nearest to 7": lambda: Op(lambda x: F.interpolate(x, size=7)),
    "slice ::2": lambda: Op(lambda x: x[..., ::2, ::2]),
    "crop 1:-1": lambda: Op(lambda x: x[..., 1:-1, 1:-1]),
    "crop 1:": lambda: Op(lambda x: x[..., 1:, 1:]),
    "transposed conv": lambda: nn.ConvTranspose2d(CHANNELS, CHANNELS, 3, stride=2, padding=1),
    "transposed conv output_padding": lambda: nn.ConvTranspose2d(CHANNELS, CHANNELS, 3, stride=2, padding=1,
                                                                 output_padding=1),
    "unfold fold": lambda: Op(_unfold_fold),
    "roll": lambda: Op(lambda x: torch.roll(x, 1, dims=-1)),
}


def build(names: list[str]) -> nn.Module:
    """A stem conv, then the named ops; every filter averaged over the dihedral group (in float64, where the
    average is symmetric to rounding), so each conv commutes with rotations and mirrors."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, CHANNELS, 3, padding=1), *(OPS[name]() for name in names)).double().eval()
    with torch.no_grad():
        for conv in net.modules():
            if isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d)):
                conv.weight.copy_(torch.stack(_dihedral(conv.weight)).mean(0))
    return net


# Each op of the audit at a size where the check used to say EXACT, the measured error it has there, and the
# verdict it gets now: False where the maths decides it, None ("unknown") where the check cannot see.
@pytest.mark.parametrize(("name", "n", "verdict"), [
    ("lp pool", 15, False), ("max pool indices", 14, False), ("nearest /2", 15, False), ("nearest /2", 14, False),
    ("bilinear /2", 15, False), ("nearest to 7", 16, False), ("slice ::2", 14, False), ("crop 1:", 15, False),
    ("transposed conv output_padding", 15, False), ("unfold fold", 15, None), ("roll", 15, None),
])
def test_broken_ops_are_not_exact(name, n, verdict):
    net = build([name])
    assert measured_error(net, n) > 1e-3
    report = check_exactness(net, n, group="p4m", nearest=False)
    assert report.exact is verdict, report.to_table()
    if verdict is None:
        assert report.unknown and report.unknown[0].startswith("unknown: ") and report.unknown[0].endswith(" at 1")


@pytest.mark.parametrize(("name", "n"), [
    ("lp pool", 14), ("max pool indices", 15), ("nearest x2", 15), ("bilinear /2", 14), ("slice ::2", 15),
    ("crop 1:-1", 14), ("transposed conv", 14), ("adaptive pool", 14), ("adaptive", 14),
])
def test_exact_ops_are_proved_exact(name, n):
    net = build([name])
    assert check_exactness(net, n, group="p4m", nearest=False).exact is True
    assert measured_error(net, n) < 1e-10


def test_unknown_verdict_in_the_table_and_json():
    report = check_exactness(build(["conv", "unfold fold"]), 15, group="p4m", nearest=False)
    assert report.exact is None and report.unknown == ("unknown: unfold at 2",)
    assert report.to_table().splitlines()[0].endswith("UNKNOWN (unknown: unfold at 2)")
    assert [(row.kind, row.exact) for row in report.layers] == [("unfold", None)]
    payload = json.loads(report.to_json())
    assert payload["exact"] is None and payload["unknown"] == ["unknown: unfold at 2"]
    assert payload["layers"][0]["exact"] is None


def test_a_broken_layer_outweighs_an_unknown_one():
    report = check_exactness(build(["slice ::2", "roll"]), 14, group="p4m", nearest=False)
    assert report.exact is False and report.unknown == ("unknown: roll at 2",)


# Nets that cannot run at n, and what the check used to answer there: EXACT or a verdict after a map cropped to
# nothing (a one-pixel plane was not judged), or a raw torch error from an op that fails at that size.
@pytest.mark.parametrize(("names", "n"), [
    (["adaptive pool", "crop 1:-1", "crop 1:-1"], 14), (["max pool", "crop 1:-1"], 3), (["conv s2", "crop 1:"], 2),
    (["roll", "crop 1:-1"], 2), (["nearest /2"], 1), (["bilinear /2"], 1), (["unfold fold"], 1),
    (["crop 1:", "nearest x2"], 1), (["roll", "max pool", "max pool"], 2),
])
def test_a_size_the_net_cannot_run_at_is_refused_with_the_smallest_that_fits(names, n):
    net = build(names)
    assert not runs_at(net, n)
    with pytest.raises(UserError, match=rf"^input_size: {n} is too small for Sequential: layer '\d' ") as refused:
        check_exactness(net, n, group="p4m")
    message = str(refused.value)
    assert "\n" not in message
    fits = re.search(r"the smallest size that fits is (\d+)$", message)
    if fits:
        assert runs_at(net, int(fits[1])) and not runs_at(net, int(fits[1]) - 1), message
    else:  # a map emptied after a fixed-size layer: no input size helps
        assert message.endswith("no input size fits") and not any(runs_at(net, m) for m in (n + 1, 2 * n, 64))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(sorted(OPS)), min_size=1, max_size=3), st.integers(1, 17))
def test_static_verdict_is_never_exact_where_the_error_is_not(names, n):
    """A net that runs gets a verdict, never EXACT where it is measurably not; one that cannot run is refused."""
    net = build(names)
    if not runs_at(net, n):
        with pytest.raises(UserError, match="too small"):
            check_exactness(net, n, group="p4m", nearest=False)
        return
    report = check_exactness(net, n, group="p4m", nearest=False)
    if report.exact:
        assert measured_error(net, n) < 1e-10, (names, n, report.to_table())
