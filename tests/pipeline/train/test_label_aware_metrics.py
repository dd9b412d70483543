"""The test protocol scores a turned image against the label the data gives it: on ``mnist6-180`` a 6 turned by 180
degrees is the other class, and a 6 turned by 90 degrees is neither, so that angle is not scored at all."""

import math

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from equisweep.datamodules import build_datamodule
from equisweep.datamodules.regimes import angle_grid
from equisweep.pipeline import vocabulary as m
from equisweep.pipeline.train.module import EquivarianceClassifier, View


class Oracle(nn.Module):
    """Knows the test images by heart: the label of each, exactly as the model sees it; an image it has never seen
    (a 6 turned by 90 degrees) is called class 0."""

    def __init__(self, images: Tensor, labels: Tensor) -> None:
        super().__init__()
        self.register_buffer("images", images.flatten(1))
        self.register_buffer("labels", labels)

    def forward(self, x: Tensor) -> Tensor:
        match = (x.flatten(1)[:, None, :] == self.images[None]).all(-1)  # [batch, known images]
        label = torch.where(match.any(1), self.labels[match.int().argmax(1)], 0)
        return F.one_hot(label, 2).float()


def test_a_net_exactly_right_on_mnist6_180_scores_100_percent_where_labels_are_defined_and_nothing_elsewhere():
    datamodule = build_datamodule("mnist6-180", num_workers=0)
    datamodule.setup()
    images, labels = datamodule.splits["test"]
    module = EquivarianceClassifier(Oracle(datamodule.prepare_batch(images), labels), num_classes=2,
                                    eval_angles=angle_grid(), orbit_group="p4m", background=datamodule.background)
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False)
    trainer.test(module, datamodule=datamodule, verbose=False)
    results = module.test_results
    assert results[m.TEST_ACC_BY_ANGLE] == {0.0: 1.0, 180.0: 1.0}  # 90 degrees (and every other angle) absent
    assert results[m.TEST_ACC_UPRIGHT] == results[m.TEST_ACC_ORBIT] == 1.0  # orbit: identity and half turn of p4m
    assert results[m.TEST_ACC_MEAN_ANGLES] == results[m.TEST_ACC_MIN_ANGLES] == 1.0


def test_a_metric_with_no_defined_view_left_is_nan_never_zero():
    module = EquivarianceClassifier(nn.Flatten(), num_classes=2, eval_angles=[90.0, 270.0])
    results = module.summarise({View(0.0): 0.75})  # only the upright view had labels
    assert results[m.TEST_ACC_BY_ANGLE] == {} and results[m.TEST_ACC_UPRIGHT] == 0.75
    assert results[m.TEST_ACC_ORBIT] == 0.75  # the orbit's identity
    assert math.isnan(results[m.TEST_ACC_MEAN_ANGLES]) and math.isnan(results[m.TEST_ACC_MIN_ANGLES])
