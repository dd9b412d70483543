"""Training-symmetry regimes: parsing, the sampled distributions, and exact rotations."""

import pytest
import torch

from equisweep.datamodules.regimes import parse_regime, rotate, transform_batch
from equisweep.errors import UserError


def _draw(text: str, n: int = 4000, per_batch: bool = False):
    return parse_regime(text, per_batch).sample(n, torch.Generator().manual_seed(0))


def test_c4_draws_only_quarter_turns_in_roughly_equal_numbers():
    angles, mirrors = _draw("c4")
    counts = torch.stack([(angles == a).sum() for a in (0.0, 90.0, 180.0, 270.0)])
    assert counts.sum() == 4000 and not mirrors.any()
    assert (counts - 1000).abs().max() < 100  # ~4.5 binomial std


def test_d4_adds_mirrors_half_the_time_and_flip_only_mirrors():
    angles, mirrors = _draw("d4")
    assert set(angles.tolist()) == {0.0, 90.0, 180.0, 270.0} and abs(mirrors.float().mean() - 0.5) < 0.04
    angles, mirrors = _draw("flip")
    assert (angles == 0).all() and abs(mirrors.float().mean() - 0.5) < 0.04


def test_gaussian_matches_its_mean_and_std():
    angles, _ = _draw("gaussian(45, 20)")
    assert abs(angles.mean() - 45) < 1.5 and abs(angles.std() - 20) < 1.0


def test_uniform_covers_the_circle():
    angles, _ = _draw("uniform")
    assert angles.min() >= 0 and angles.max() < 360
    assert abs(angles.mean() - 180) < 6 and abs(angles.std() - 360 / 12**0.5) < 3


def test_per_example_by_default_and_per_batch_on_request():
    assert len(set(_draw("gaussian(45,20)", 64)[0].tolist())) == 64
    assert len(set(_draw("gaussian(45,20)", 64, per_batch=True)[0].tolist())) == 1


def test_draws_change_every_step_and_repeat_with_the_seed():
    regime = parse_regime("uniform")
    gen = torch.Generator().manual_seed(3)
    first, second = regime.sample(8, gen)[0], regime.sample(8, gen)[0]
    assert not torch.equal(first, second)
    assert torch.equal(first, regime.sample(8, torch.Generator().manual_seed(3))[0])


@pytest.mark.parametrize("text", ["c8", "gauss(1,2)", "gaussian(45)", "gaussian(a,b)", ""])
def test_bad_regime_strings_are_one_clear_error(text):
    with pytest.raises(UserError, match=r"^train_symmetry: unknown regime"):
        parse_regime(text)


def test_rot90_through_the_augmentation_equals_torch_rot90():
    digit = torch.rand(3, 1, 28, 28)
    angles = torch.tensor([90.0, 180.0, 270.0], dtype=torch.float64)
    turned = rotate(digit, angles)
    for i, k in enumerate((1, 2, 3)):
        assert torch.equal(turned[i], torch.rot90(digit[i], k, (-2, -1)))


def test_interpolated_rotation_turns_the_same_way_as_rot90():
    # 90.0000001 degrees takes the resampling path; it must land (almost) where rot90 does.
    x = torch.rand(2, 1, 9, 9, dtype=torch.float64)
    turned = rotate(x, torch.tensor([90.0000001, 90.0000001], dtype=torch.float64))
    assert torch.allclose(turned, torch.rot90(x, 1, (-2, -1)), atol=1e-6)


def test_resampled_corners_take_the_background_value():
    x = torch.full((1, 2, 16, 16), 5.0)
    turned = rotate(x, torch.tensor([45.0], dtype=torch.float64), torch.tensor([-1.0, 2.0]))
    assert turned[0, 0, 0, 0] == pytest.approx(-1.0) and turned[0, 1, 0, 0] == pytest.approx(2.0)
    assert turned[0, 0, 8, 8] == pytest.approx(5.0)


def test_none_regime_leaves_the_batch_alone_and_flip_mirrors_columns():
    x = torch.rand(64, 1, 5, 5)
    gen = torch.Generator().manual_seed(0)
    assert transform_batch(x, parse_regime("none"), gen) is x
    flipped = transform_batch(x, parse_regime("flip"), gen)
    same = (flipped == x).flatten(1).all(1)
    mirrored = (flipped == x.flip(-1)).flatten(1).all(1)
    assert (same | mirrored).all() and same.any() and mirrored.any()
