"""The datamodule on the embedded MNIST digits: sizes, normalisation, regimes only in training, device batches."""

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from equisweep.datamodules import build_datamodule
from equisweep.datamodules.datamodule import DeviceBatches
from equisweep.errors import UserError


@pytest.fixture(scope="module")
def digits():
    dm = build_datamodule("mnist5k", 28, seed=0)
    dm.setup()
    return dm


@pytest.mark.parametrize(("method", "size"), [("resize", 29), ("resize", 27), ("pad", 33), ("crop", 24)])
def test_every_image_is_brought_to_the_input_size(digits, method, size):
    dm = build_datamodule("mnist5k", size, resize_method=method)
    dm.splits = digits.splits
    x = dm.prepare_batch(digits.splits["test"][0][:4])
    assert x.shape == (4, 1, size, size) and x.dtype == torch.float32


def test_pad_and_crop_keep_the_pixels(digits):
    raw = digits.splits["test"][0][:2]
    padded = build_datamodule("mnist5k", 33, resize_method="pad")
    cropped = build_datamodule("mnist5k", 24, resize_method="crop")
    padded.splits = cropped.splits = digits.splits
    assert torch.equal(padded.prepare_batch(raw)[..., 2:30, 2:30], digits.prepare_batch(raw))
    assert torch.equal(cropped.prepare_batch(raw), digits.prepare_batch(raw)[..., 2:26, 2:26])


def test_pad_cannot_shrink_and_crop_cannot_grow():
    with pytest.raises(UserError, match="^resize_method: pad cannot shrink 28 to 27"):
        build_datamodule("mnist5k", 27, resize_method="pad")
    with pytest.raises(UserError, match="^resize_method: crop cannot grow"):
        build_datamodule("mnist5k", 29, resize_method="crop")
    with pytest.raises(UserError, match="^resize_method: unknown"):
        build_datamodule("mnist5k", 28, resize_method="stretch")


def test_normalised_with_real_per_pixel_statistics(digits):
    x = digits.prepare_batch(digits.splits["train"][0])
    assert abs(x.mean()) < 0.02 and abs(x.std() - 1) < 0.02
    assert digits.background == pytest.approx([-0.1307 / 0.3081])
    assert x.min() == pytest.approx(digits.background[0])  # black digits' background maps to it


class _Recorder(pl.LightningModule):
    """Records the batches Lightning hands it, after the datamodule's on-device processing."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(()))
        self.seen: dict[str, list[torch.Tensor]] = {"train": [], "val": [], "test": []}

    def training_step(self, batch, batch_idx):
        self.seen["train"].append(batch[0])
        return self.weight * batch[0].sum()

    def validation_step(self, batch, batch_idx):
        self.seen["val"].append(batch[0])

    def test_step(self, batch, batch_idx):
        self.seen["test"].append(batch[0])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def test_regime_applies_to_training_batches_only(tmp_path):
    dm = build_datamodule("mnist5k", 28, train_symmetry="c4", batch_size=100, eval_batch_size=500)
    recorder = _Recorder()
    trainer = pl.Trainer(max_epochs=1, limit_train_batches=3, limit_val_batches=1, limit_test_batches=1,
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         num_sanity_val_steps=0, default_root_dir=tmp_path, accelerator="cpu")
    trainer.fit(recorder, datamodule=dm)
    trainer.test(recorder, datamodule=dm)
    upright = dm.prepare_batch(dm.splits["test"][0][:500])
    assert torch.equal(recorder.seen["test"][0], upright)  # the test set is never rotated
    assert torch.equal(recorder.seen["val"][0], dm.prepare_batch(dm.splits["val"][0][:500]))
    train = torch.cat(recorder.seen["train"])
    # every training image is a quarter turn of an upright digit, and the turns vary across the batch
    order = torch.randperm(3000, generator=torch.Generator().manual_seed(0))[:300]
    originals = dm.prepare_batch(dm.splits["train"][0][order])
    turns = [[torch.equal(t, torch.rot90(o, k, (-2, -1))) for k in range(4)] for t, o in zip(train, originals)]
    assert all(any(row) for row in turns)
    assert len({row.index(True) for row in turns}) == 4


def test_device_batches_cover_everything_and_reshuffle_each_epoch():
    images, labels = torch.arange(10).view(10, 1, 1, 1), torch.arange(10)
    batches = DeviceBatches(images, labels, 4, shuffle=True, generator=torch.Generator().manual_seed(0))
    first = torch.cat([y for _, y in batches])
    second = torch.cat([y for _, y in batches])
    assert len(batches) == 3 and sorted(first.tolist()) == list(range(10))
    assert not torch.equal(first, second)


def test_calibration_batches_do_not_disturb_the_training_stream(digits):
    dm = build_datamodule("mnist5k", 28, train_symmetry="uniform")
    dm.setup()
    first = next(iter(dm.calibration_batches(1, torch.device("cpu"))))
    assert first.shape == (64, 1, 28, 28)
    state = dm._augment.get_state()
    assert torch.equal(next(iter(dm.calibration_batches(1, torch.device("cpu")))), first)
    assert torch.equal(dm._augment.get_state(), state)


def test_streamed_source_goes_through_workers_and_the_same_device_pipeline(tmp_path):
    from tests.datamodules.test_sources import _write_pcam

    _write_pcam(tmp_path)
    dm = build_datamodule("pcam", 97, train_symmetry="c4", batch_size=4, data_dir=tmp_path, num_workers=1)
    dm.prepare_data()
    dm.setup()
    images, labels = next(iter(dm.train_dataloader()))
    assert images.dtype == torch.uint8 and images.shape[1:] == (3, 96, 96)
    x = dm.prepare_batch(images, training=True)
    assert x.shape == (4, 3, 97, 97) and labels.dtype == torch.int64
    assert next(iter(dm.calibration_batches(1, torch.device("cpu")))).shape == (4, 3, 97, 97)
