"""Packed training of the families beyond the layers (invariance wrappers, the soft-equivariance penalty): each copy
of a pack computes, penalises and trains as its own network, in float64."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from equisweep.models import build_model
from equisweep.models.invariance import invariance_of
from equisweep.models.packed import PackedModel
from equisweep.pipeline import vocabulary as m
from equisweep.pipeline.train.eq_penalty import lie_penalty, orbit_penalty
from equisweep.pipeline.train.packing import run_packed
from equisweep.pipeline.train.run import run_one
from tests.pipeline.train.test_packing import assert_same_run, tiny

SEEDS = (0, 1, 2)
BACKGROUND = -0.3  # what a rotation brings in from outside the image (the normalised black)


def _copies(invariance) -> list[torch.nn.Module]:
    nets = []
    for seed in SEEDS:
        torch.manual_seed(seed)
        nets.append(build_model("p4cnn", group="p4", width=2, invariance=invariance, background=BACKGROUND).double())
    return nets


@pytest.mark.parametrize("invariance", ["average", {"method": "canonicalize", "width": 2},
                                        {"method": "augerino", "samples": 2}])
def test_a_packed_wrapper_computes_each_copy_as_its_own_network(invariance):
    nets = _copies(invariance)
    with torch.no_grad():  # distinct learned ranges, so that a mixed-up copy would show
        for k, net in enumerate(nets):
            if hasattr(net, "range_logit"):
                net.range_logit.fill_(-2.0 + k)
    pack = PackedModel(nets).double()
    x = torch.randn(len(SEEDS), 3, 1, 28, 28, dtype=torch.float64)
    record = invariance_of(nets[0])
    # Augerino draws its training angles per copy, like dropout: not its unpacked run's draws.
    for mode in (True, False) if record.name != "augerino" else (False,):
        pack.train(mode)
        expected = torch.stack([net.train(mode)(x[k]) for k, net in enumerate(nets)])
        torch.testing.assert_close(pack(x), expected, rtol=1e-10, atol=1e-10)
    if record.loss is not None:
        terms = torch.stack([record.loss(net, x[k], net.options) for k, net in enumerate(nets)])
        torch.testing.assert_close(pack.per_copy(lambda net, images: record.loss(net, images, net.options), x), terms,
                                   rtol=1e-12, atol=1e-12)
        assert len(set(terms.tolist())) == len(SEEDS)  # the copies' terms differ: each copy read its own weights


@pytest.mark.parametrize("mode", [True, False])
def test_the_penalties_of_a_pack_are_each_copys_own(mode):
    nets = _copies("none")
    pack = PackedModel(nets).double().train(mode)
    x = torch.randn(len(SEEDS), 3, 1, 28, 28, dtype=torch.float64)
    for net in nets:
        net.train(mode)
    alone = [lie_penalty(net, x[k], BACKGROUND) for k, net in enumerate(nets)]
    torch.testing.assert_close(lie_penalty(pack, x, BACKGROUND), torch.stack(alone), rtol=1e-10, atol=1e-12)
    torch.manual_seed(5)
    drawn = torch.randint(3, (len(SEEDS),))  # orbit_penalty's draw of r90, r180 or r270, one per copy
    torch.manual_seed(5)
    packed = orbit_penalty(pack, x, pack(x), pack.group)
    assert len(set(drawn.tolist())) > 1, drawn  # copies drew different elements
    for k, net in enumerate(nets):
        turned = torch.rot90(x[k], int(drawn[k]) + 1, (-2, -1))
        change = F.softmax(net(turned), -1) - F.softmax(net(x[k]), -1)
        torch.testing.assert_close(packed[k], change.pow(2).sum(-1).mean(), rtol=1e-10, atol=1e-12)


@pytest.mark.trains
@pytest.mark.slow
def test_packed_canonicalised_copies_are_their_separate_runs(tmp_path):
    """The identity prior (its term computed per copy) and the choice histogram (per copy) as in separate runs."""
    settings = dict(epochs=1, input_size=17, precision="64-true", invariance={"method": "canonicalize", "width": 2})
    configs = [tiny(seed, **settings) for seed in SEEDS[:2]]
    results = run_packed(configs, [tmp_path / "pack" / str(c.seed) for c in configs])
    for k, config in enumerate(configs):
        separate = run_one(config, tmp_path / f"run{k}", enable_progress_bar=False)
        assert set(results[k]) == set(separate)
        assert_same_run(results[k], separate, tol=1e-8)
        assert set(separate[m.FAMILY_DIAGNOSTICS]) == {f"chosen_r{d}" for d in (0, 90, 180, 270)}
        assert separate[m.EXACT] is True
