"""Each source's label action: which turned (and mirrored) test images have a label, and which label.

The expectations are written from the images themselves: a 6 turned by 180 degrees is the other class of mnist6-180,
a mirrored 6 the other class of mnist6-m, and any other quarter turn or mirror of those is neither class.
"""

import pytest
import torch

from equisweep.datamodules import build_datamodule
from equisweep.datamodules.label_action import HALF_TURN, MIRROR, LabelAction
from equisweep.datamodules.sources import SOURCES, get_source, load_tensors
from equisweep.groups import Element

QUARTERS = (0.0, 90.0, 180.0, 270.0)


def _defined(action: LabelAction) -> dict[tuple[float, bool], list[int] | None]:
    labels = torch.tensor([0, 1])
    return {(angle, mirror): None if (y := action.relabel(labels, angle, mirror)) is None else y.tolist()
            for mirror in (False, True) for angle in QUARTERS}


@pytest.mark.parametrize("name", ["mnist6-180", "mnist69"])
def test_half_turn_swaps_the_two_classes_and_leaves_every_other_element_undefined(name):
    assert _defined(get_source(name).label_action) == {
        (0.0, False): [0, 1], (90.0, False): None, (180.0, False): [1, 0], (270.0, False): None,
        (0.0, True): None, (90.0, True): None, (180.0, True): None, (270.0, True): None}


def test_mirror_swaps_the_classes_of_mnist6_m_and_rotations_are_undefined():
    assert _defined(get_source("mnist6-m").label_action) == {
        (0.0, False): [0, 1], (90.0, False): None, (180.0, False): None, (270.0, False): None,
        (0.0, True): [1, 0], (90.0, True): None, (180.0, True): None, (270.0, True): None}


def test_every_other_source_keeps_its_labels_at_every_angle():
    labels = torch.arange(10)
    for name, source in SOURCES.items():
        if name in ("mnist6-180", "mnist69", "mnist6-m"):
            continue
        action = source.label_action
        assert all(torch.equal(action.relabel(labels, angle, mirror), labels)
                   for angle in (*QUARTERS, 10.0, 135.0) for mirror in (False, True)), name


def test_off_the_grid_angles_are_undefined_unless_the_labels_are_invariant():
    action = get_source("mnist6-180").label_action
    assert [a for a in range(0, 360, 10) if action.defined(float(a))] == [0, 180]
    assert action.defined(-180.0) and action.defined(540.0)  # the same element, as the test views wrap angles


def test_combinations_follow_from_the_generators():
    both = LabelAction.generated_by({HALF_TURN: (1, 0), MIRROR: (1, 0)})
    assert dict(both.elements) == {Element(0, 0): (0, 1), HALF_TURN: (1, 0), MIRROR: (1, 0), Element(2, 1): (0, 1)}
    cycle = LabelAction.generated_by({Element(1, 0): (1, 2, 3, 0)})  # a quarter turn moves each label one on
    assert dict(cycle.elements) == {Element(0, 0): (0, 1, 2, 3), Element(1, 0): (1, 2, 3, 0),
                                    HALF_TURN: (2, 3, 0, 1), Element(3, 0): (3, 0, 1, 2)}


def test_generators_that_are_no_group_action_are_refused():
    with pytest.raises(ValueError, match="gets two label permutations"):
        LabelAction.generated_by({Element(1, 0): (1, 0), HALF_TURN: (1, 0)})  # r90 twice keeps what r180 swaps
    with pytest.raises(ValueError, match="gets two label permutations"):
        LabelAction.generated_by({Element(1, 0): (1, 2, 0)})  # four quarter turns cycle three classes once more


def test_the_datamodule_answers_with_its_source_label_action():
    assert build_datamodule("mnist6-m").label_action == get_source("mnist6-m").label_action


@pytest.fixture(scope="module")
def mirror_splits():
    return load_tensors(get_source("mnist6-m"), None, seed=0)


def test_mnist6_m_holds_each_six_and_its_mirror_in_two_balanced_classes(mirror_splits):
    seen = {}
    for key, size in (("train", 600), ("val", 200), ("test", 200)):
        images, labels = mirror_splits[key]
        assert images.shape == (size, 1, 28, 28) and images.dtype == torch.uint8
        assert torch.bincount(labels, minlength=2).tolist() == [size // 2, size // 2], key
        upright = {bytes(img.numpy()) for img in images[labels == 0]}
        mirrored = {bytes(torch.flip(img, (-1,)).numpy()) for img in images[labels == 1]}
        assert upright == mirrored and len(upright) == size // 2, key
        seen[key] = upright
    assert not (seen["train"] & seen["val"]) and not (seen["train"] & seen["test"]) and not (seen["val"] & seen["test"])


def test_mnist6_m_holds_the_same_sixes_as_mnist6_180(mirror_splits):
    turned = load_tensors(get_source("mnist6-180"), None, seed=0)
    for key in ("train", "test"):
        sixes = {bytes(img.numpy()) for img in mirror_splits[key][0][mirror_splits[key][1] == 0]}
        assert sixes == {bytes(img.numpy()) for img in turned[key][0][turned[key][1] == 0]}
