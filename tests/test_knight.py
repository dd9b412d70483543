"""The paper's knight experiment (shared/paper.md §5): an approximate P4 net can learn to tell an image from its
own 90-degree rotation; an exact one cannot, whatever its weights. A relaxed one (relaxed group conv, residual
pathway, learned partial equivariance) learns it even at a size where its grid is exact. The families at the input
and in the loss move the measured orbit error as they should: the soft-equivariance penalty lowers it, and augerino's
learned range shrinks on this task unless a strong regulariser widens it toward invariance."""

import math

import pytest
import torch
from torch import nn

from equisweep.exactness import equivariance_error
from equisweep.groups import get_group
from equisweep.models.invariance import Inputs, invariance_of, wrap_backbone
from equisweep.models.relaxation import resolve_relaxation
from equisweep.pipeline.train.eq_penalty import orbit_penalty

pytestmark = pytest.mark.trains


def _glyph(n: int) -> torch.Tensor:
    """An asymmetric 'F'-like glyph, drawn once at 32x32 and zero-padded to n."""
    img = torch.zeros(32, 32)
    img[6:27, 9:13] = 1.0  # stem
    img[6:10, 13:24] = 1.0  # top bar
    img[15:18, 13:21] = 0.6  # middle bar
    img[22:25, 3:9] = 0.3  # foot
    return nn.functional.pad(img, (0, n - 32, 0, n - 32))


def _knight_batch(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The glyph and its quarter turn [2, 1, n, n], told apart by their labels."""
    x = _glyph(n)
    return torch.stack([x, torch.rot90(x, 1, (-2, -1))]).unsqueeze(1), torch.tensor([0, 1])


def _fit(n: int, relaxation: str = "none", steps: int = 300, seed: int = 0, invariance="none",
         eq_penalty: float = 0.0, group: str = "p4") -> nn.Module:
    """Train a lifting conv and invariant head on the glyph and its quarter turn, with the relaxation's own penalty
    (default coefficients), the invariance wrapper's term and ``eq_penalty`` times the orbit penalty in the loss; the
    trained net in evaluation mode."""
    torch.manual_seed(seed)
    batch, labels = _knight_batch(n)
    p4 = get_group("p4")
    record, options = resolve_relaxation(relaxation)
    layers = record.layers(get_group(group), options, "stride")
    net = wrap_backbone(nn.Sequential(layers.lift(1, 4, 3, stride=2, padding=1),
                                      layers.head("coset", 4, 2, pool_group_first=False)), invariance, Inputs())
    wrapper = invariance_of(net)
    opt = torch.optim.Adam(net.parameters(), lr=0.02)
    for _ in range(steps):
        opt.zero_grad()
        logits = net(batch)
        loss = nn.functional.cross_entropy(logits, labels)
        if record.penalty is not None:
            loss = loss + record.penalty(net, options)
        if wrapper is not None and wrapper.loss is not None:
            loss = loss + wrapper.loss(net, batch, net.options)
        if eq_penalty:
            loss = loss + eq_penalty * orbit_penalty(net, batch, logits, p4).mean()
        loss.backward()
        opt.step()
    return net.eval()


def _train(n: int, relaxation: str = "none", steps: int = 300) -> tuple[float, torch.Tensor]:
    """The loss and logits of the trained net in evaluation mode."""
    net = _fit(n, relaxation, steps)
    batch, labels = _knight_batch(n)
    with torch.no_grad():
        logits = net(batch)
    return float(nn.functional.cross_entropy(logits, labels)), logits


def _orbit_error(net: nn.Module, n: int) -> float:
    """The measured orbit error of the output on the knight task's images (max over the quarter turns)."""
    return equivariance_error(net, _knight_batch(n)[0], "p4")["output"]["max"]


def test_approximate_net_learns_to_break_symmetry_at_32():
    loss, logits = _train(32)
    assert loss < 0.3 * math.log(2)
    assert logits.argmax(1).tolist() == [0, 1]


def test_exact_net_cannot_at_33():
    loss, logits = _train(33)
    assert torch.allclose(logits[0], logits[1], atol=1e-5)
    assert loss >= math.log(2) - 1e-5


# Partial needs more steps: evaluation keeps an element until its keep-probability falls below 0.5, and Adam moves
# a keep-logit by at most about lr a step, from logit(keep_init).
@pytest.mark.parametrize(("relaxation", "steps"), [("relaxed", 300), ("rpp", 300), ("partial", 1000)])
def test_relaxed_net_learns_to_break_symmetry_at_exact_33(relaxation, steps):
    loss, logits = _train(33, relaxation, steps)
    assert loss < 0.5 * math.log(2)
    assert logits.argmax(1).tolist() == [0, 1]


# Measured over seeds 0-2 on the default and AVX2 kernel paths (150 steps): the orbit error falls from 1.77-2.00 to
# 0.10-0.84 under the penalty, at most 0.43 times its value without.
def test_the_orbit_penalty_lowers_the_orbit_error():
    free = _orbit_error(_fit(32, steps=150), 32)
    penalised = _orbit_error(_fit(32, steps=150, eq_penalty=30.0), 32)
    assert free > 1.0
    assert penalised < 0.6 * free, (penalised, free)


# Measured over seeds 0-2 on both kernel paths (a plain CNN, 150 steps, from 30 degrees): without the regulariser the
# range shrinks to 11.5-17.2 degrees and the net breaks the symmetry (orbit error 0.60-1.63); a strong one widens it
# to 161 degrees and the orbit error falls to 0.003-0.022, at most 0.025 times its value without.
def test_the_augerino_range_shrinks_on_a_symmetry_breaking_task_and_a_strong_regulariser_widens_it():
    measured = {}
    for reg in (0.0, 1.0):
        net = _fit(32, steps=150, group="z2", invariance={"method": "augerino", "init_range": 30, "reg": reg})
        measured[reg] = math.degrees(float(net.range.detach())), _orbit_error(net, 32)
    (narrow, breaking), (wide, invariant) = measured[0.0], measured[1.0]
    assert narrow < 24 and breaking > 0.3, measured
    assert wide > 140 and invariant < 0.2 * breaking, measured
