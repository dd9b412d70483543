"""Under ``16-mixed`` the copies of a pack share one GradScaler: a copy that died must not stop the others."""

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.plugins import MixedPrecision

from equisweep.models.packed import PackedModel
from equisweep.pipeline.train.packed_module import PackedClassifier
from equisweep.pipeline.train.packing import PackedDataModule
from equisweep.pipeline.train.run import build_run, classifier_options
from tests.pipeline.train.test_packing import tiny


class KillCopy(pl.Callback):
    """NaN into copy 1's first weight before the second step; copy 0's weights once the pack has found copy 1 dead
    (the last batch of the first epoch), and at the end."""

    def __init__(self) -> None:
        self.when_found, self.at_end = None, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.current_epoch == 0 and batch_idx == 1:
            with torch.no_grad():
                next(pl_module.backbone.parameters())[1].fill_(float("nan"))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not pl_module.alive[1] and self.when_found is None:
            self.when_found = pl_module.backbone.copy_state(0)

    def on_train_end(self, trainer, pl_module) -> None:
        self.at_end = pl_module.backbone.copy_state(0)


@pytest.mark.slow
def test_a_dead_copy_does_not_stop_the_live_ones_under_a_shared_grad_scaler():
    configs = [tiny(seed, group="z2") for seed in (0, 1)]  # two epochs of three steps
    datamodules, backbones, _ = zip(*(build_run(c) for c in configs))
    module = PackedClassifier(PackedModel(backbones), datamodules[0].num_classes,
                              **classifier_options(configs[0], datamodules[0]))
    kill = KillCopy()
    # Trainer(precision="16-mixed") on a CPU falls back to bf16 without a scaler; the plugin keeps fp16 and its scaler.
    amp = MixedPrecision("16-mixed", "cpu")
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", plugins=[amp], callbacks=[kill], logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0)
    trainer.fit(module, datamodule=PackedDataModule(datamodules))
    assert amp.scaler.is_enabled() and module.alive == [True, False]
    moved = [name for name in module.backbone.param_names if not torch.equal(kill.at_end[name], kill.when_found[name])]
    assert moved, "the live copy did not move in the three steps after the other died"
