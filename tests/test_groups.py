"""Group axioms and the consistency of the actions on images and on group feature maps."""

import itertools

import pytest
import torch

from equisweep.errors import UserError
from equisweep.groups import P4, P4M, Z2, Element, get_group

GROUPS = [Z2, P4, P4M, get_group("c8"), get_group("d3"), get_group("c2")]


@pytest.mark.parametrize("group", GROUPS, ids=lambda g: g.name)
def test_group_axioms(group):
    e = group.elements[0]
    assert e == Element(0, 0) and len(group.elements) == group.order
    for a in group.elements:
        assert group.compose(e, a) == a == group.compose(a, e)
        assert group.compose(a, group.inverse(a)) == e
    for a, b, c in itertools.product(group.elements, repeat=3):
        assert group.compose(group.compose(a, b), c) == group.compose(a, group.compose(b, c))


@pytest.mark.parametrize("group", [Z2, P4, P4M], ids=lambda g: g.name)
def test_acting_twice_equals_acting_with_the_composite(group):
    image = torch.randn(2, 3, 5, 5)
    fmap = torch.randn(2, 3, group.order, 5, 5)
    for a, b in itertools.product(group.elements, repeat=2):
        ab = group.compose(a, b)
        assert torch.equal(group.act_on_image(a, group.act_on_image(b, image)), group.act_on_image(ab, image))
        assert torch.equal(group.act_on_map(a, group.act_on_map(b, fmap)), group.act_on_map(ab, fmap))


def test_conventions_rotation_is_rot90_and_mirror_flips_columns():
    x = torch.arange(9.0).view(3, 3)
    assert torch.equal(P4.act_on_image(Element(1, 0), x), torch.rot90(x, 1, (-2, -1)))
    assert torch.equal(P4M.act_on_image(Element(0, 1), x), torch.flip(x, (-1,)))
    fmap = torch.arange(4.0).view(1, 1, 4, 1, 1)
    # r moves slot h to slot h + 1: (r·f)(h) = f(r^-1 h)
    assert P4.act_on_map(Element(1, 0), fmap).flatten().tolist() == [3.0, 0.0, 1.0, 2.0]


def test_only_quarter_turns_act_on_the_pixel_grid():
    c8 = get_group("c8")
    assert [c8.label(a) for a in c8.grid_elements] == ["r0", "r90", "r180", "r270"]
    assert not c8.acts_exactly_on_grid and P4M.acts_exactly_on_grid
    with pytest.raises(ValueError, match="not a pixel-grid symmetry"):
        c8.act_on_image(Element(1, 0), torch.zeros(3, 3))


def test_c4_and_d4_name_the_same_groups_as_p4_and_p4m():
    assert (get_group("c4").order, get_group("d4").order) == (4, 8)
    assert get_group("D4").mirrors


@pytest.mark.parametrize("name", ["p5", "c0", "", "rot"])
def test_unknown_group_names_the_choices(name):
    with pytest.raises(UserError, match="choose from z2, p4, p4m"):
        get_group(name)
