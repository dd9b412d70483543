"""The ``folder`` source on a tiny real PNG tree written here: layout, labels, cached statistics, the splits without
``test/``, each user error as one line, and one epoch of ``equisweep train`` end to end."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from torch.utils.data import DataLoader

from equisweep.datamodules.folder import CorruptImageError
from equisweep.datamodules.sources import get_source, load_datasets, prepare
from equisweep.errors import UserError

CLASSES = ("ant", "bee", "cow")  # ImageFolder sorts them: labels 0, 1, 2
SIZE = (20, 24)  # PIL: width 20, height 24


def _colour(label: int, i: int) -> tuple[int, int, int]:
    """Image i of class ``label``: one solid colour whose brightest channel is the label."""
    return tuple(200 + 10 * i if channel == label else 15 * i for channel in range(3))


def write_tree(root: Path, per_split: dict[str, int]) -> Path:
    for split, count in per_split.items():
        for label, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                Image.new("RGB", SIZE, _colour(label, i)).save(folder / f"{i}.png")
    return root


@pytest.fixture
def tree(tmp_path) -> Path:
    return write_tree(tmp_path / "images", {"train": 4, "val": 2, "test": 2})


def _expected_statistics(count: int) -> tuple[np.ndarray, np.ndarray]:
    """Solid images stay solid when resized, so the pixel statistics are those of the colours, image-weighted."""
    colours = np.array([_colour(label, i) for label in range(3) for i in range(count)], dtype=np.float64) / 255
    return colours.mean(0), colours.std(0)


def test_classes_and_statistics_are_read_from_the_files_and_cached(tree):
    source = get_source("folder", tree)
    assert (source.name, source.num_classes, source.channels, source.in_memory) == ("folder", 3, 3, False)
    mean, std = _expected_statistics(4)
    np.testing.assert_allclose(source.mean, mean, atol=1e-6)
    np.testing.assert_allclose(source.std, std, atol=1e-6)
    cache = tree / "equisweep_stats.json"
    stored = json.loads(cache.read_text())
    assert stored["classes"] == list(CLASSES) and stored["train_images"] == 12 and not list(tree.glob(".*.tmp"))

    # Reused: a second read leaves the file alone and believes it (a planted value comes back).
    stored["mean"] = [0.25, 0.5, 0.75]
    cache.write_text(json.dumps(stored))
    written = cache.stat().st_mtime_ns
    assert get_source("folder", tree).mean == (0.25, 0.5, 0.75)
    assert cache.stat().st_mtime_ns == written

    # Invalidated: one more training image changes the count, so the statistics are computed again.
    Image.new("RGB", SIZE, (0, 0, 0)).save(tree / "train" / "ant" / "extra.png")
    recomputed = get_source("folder", tree)
    assert json.loads(cache.read_text())["train_images"] == 13
    assert recomputed.mean != (0.25, 0.5, 0.75) and recomputed.mean[0] < mean[0]


def test_the_three_folders_are_the_splits_with_sorted_class_labels(tree):
    source = get_source("folder", tree)
    prepare(source, tree, download=False)  # nothing to fetch, nothing raised
    splits = load_datasets(source, tree, seed=0, image_size=29)
    assert {split: len(data) for split, data in splits.items()} == {"train": 12, "val": 6, "test": 6}
    for data in splits.values():
        for image, label in data:
            assert image.dtype == torch.uint8 and image.shape == (3, 29, 29)
            assert int(image.float().mean(dim=(1, 2)).argmax()) == label  # brightest channel = class


def test_without_test_folder_val_is_the_test_split_and_validation_comes_from_train(tmp_path):
    root = write_tree(tmp_path / "images", {"train": 10, "val": 2})
    splits = load_datasets(get_source("folder", root), root, seed=0, image_size=24)
    assert {split: len(data) for split, data in splits.items()} == {"train": 27, "val": 3, "test": 6}
    assert sorted(label for _, label in splits["val"]) == [0, 1, 2]  # stratified: one image of each class
    assert not set(splits["train"].indices) & set(splits["val"].indices)
    assert splits["test"].root == str(root / "val")
    again = load_datasets(get_source("folder", root), root, seed=0, image_size=24)
    assert again["val"].indices == splits["val"].indices  # the seed names the split


def _break(tree: Path) -> Path:
    bad = tree / "train" / "bee" / "1.png"
    bad.write_bytes(b"not a png at all")
    return bad


@pytest.mark.parametrize(("damage", "message"), [
    (lambda t: os.rename(t / "val", t / "validation"),
     "data_dir: {t} has no val/ folder; a folder dataset needs train/ and val/ (and optionally test/), each with one "
     "subfolder of images per class"),
    (lambda t: [p.unlink() for p in (t / "train" / "cow").iterdir()],
     "data_dir: the class folder {t}/train/cow holds no images (looked for .jpg, .jpeg, .png, .ppm, .bmp, .pgm, .tif, "
     ".tiff, .webp); add images or remove the folder"),
    (lambda t: os.rename(t / "test" / "cow", t / "test" / "cat"),
     "data_dir: the classes of test/ differ from those of train/ (only in train/: cow; only in test/: cat); give "
     "every split the same class folders"),
    (_break,
     "data_dir: cannot decode the image {t}/train/bee/1.png (cannot identify image file '{t}/train/bee/1.png'); "
     "replace or delete it"),
])
def test_each_broken_tree_is_one_line_naming_what_is_wrong(tree, damage, message):
    damage(tree)
    with pytest.raises(UserError) as info:
        get_source("folder", tree, num_workers=2)  # the corrupt image is met in a loader worker here
    assert str(info.value) == message.format(t=tree)


def test_a_corrupt_image_met_by_a_loader_worker_during_training_is_one_line(tree):
    source = get_source("folder", tree)  # statistics cached while the files were sound
    bad = _break(tree)  # same count: the cache stays valid, so the file is first read when a batch is loaded
    train = load_datasets(get_source("folder", tree), tree, seed=0, image_size=24)["train"]
    assert get_source("folder", tree) == source
    with pytest.raises(CorruptImageError) as info:
        list(DataLoader(train, batch_size=4, num_workers=2))
    assert str(info.value) == f"data_dir: cannot decode the image {bad} (cannot identify image file '{bad}'); " \
                              "replace or delete it"


def _train(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "equisweep", "train", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def test_cli_refuses_a_missing_split_in_one_line(tmp_path):
    root = write_tree(tmp_path / "images", {"train": 2})
    result = _train("--dataset", "folder", "--data-dir", str(root), "--out", "run", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"equisweep: error: data_dir: {root} has no val/ folder; a folder "
                                                  "dataset needs train/ and val/ (and optionally test/), each with "
                                                  "one subfolder of images per class"]
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_cli_trains_p4cnn_on_a_folder_for_one_epoch(tree, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"angles": [0, 90], "eq_error_samples": 6, "bn_calibration_batches": 2}))
    result = _train("--config", str(config), "--dataset", "folder", "--data-dir", str(tree), "--model", "p4cnn",
                    "--epochs", "1", "--input-size", "29", "--batch-size", "4", "--num-workers", "2", "--out", "run",
                    cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["exact"] is False  # p4cnn at 29 is approximate
    assert 0 <= metrics["test_acc_upright"] <= 1 and set(metrics["test_acc_by_angle"]) == {"0.0", "90.0"}
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["dataset"] == "folder"
    assert (tree / "equisweep_stats.json").exists()
