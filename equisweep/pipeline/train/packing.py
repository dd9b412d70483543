"""Packed training: the seeds of one configuration trained as one fused model, each copy as its own run.

``run_packed(configs, out_dirs)`` trains K configurations that differ only in ``seed`` (and their run names) as one
``PackedModel`` under one Lightning trainer, and returns (and writes) per copy what ``run_one`` would: copy k is
built by ``build_run`` exactly as its own run (seeded with its seed), draws its data order and training-symmetry
angles from its own datamodule, and has its own loss, best-on-validation state, test, equivariance error, metrics,
``metrics.json``, ``checkpoints/best.ckpt`` (a Lightning checkpoint of the copy alone, as its run writes one) and W&B
run (``PackedClassifier`` keeps what is per copy).

The numbers are the unpacked run's up to rounding, with one exception: dropout masks (and a partial layer's
sampled masks) are each copy's own but drawn from one generator, so with dropout a copy is a run of the same
distribution, not the same draws. The technique is that of HFTA (Wang et al., MLSys 2021).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import WandbLogger
from torch import Tensor

from equisweep.datamodules.datamodule import EquiDataModule
from equisweep.datamodules.label_action import LabelAction
from equisweep.models.packed import PackedModel
from equisweep.pipeline import vocabulary as m
from equisweep.pipeline.train.config import RunConfig
from equisweep.pipeline.train.module import EquivarianceClassifier
from equisweep.pipeline.train.packed_module import PackedClassifier
from equisweep.pipeline.train.run import (
    Best,
    build_run,
    build_trainer,
    classifier_options,
    finish_run,
    fit_and_test,
    start_run_dir,
)
from equisweep.pipeline.train.tracking import failures_end_runs, wandb_logger

PER_COPY = frozenset({"seed", "run_name"})  # the settings the copies of one pack may differ in


class StackedBatches:
    """The i-th batch of every copy's loader, stacked: (images [K, B, ...], labels [K, B])."""

    def __init__(self, loaders: Sequence) -> None:
        self.loaders = loaders

    def __len__(self) -> int:
        return len(self.loaders[0])

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        for batches in zip(*self.loaders, strict=True):
            yield torch.stack([x for x, _ in batches]), torch.stack([y for _, y in batches])


class PackedDataModule(pl.LightningDataModule):
    """K datamodules (one per seed) as one: every batch is each copy's own batch, stacked on a leading axis."""

    def __init__(self, datamodules: Sequence[EquiDataModule]) -> None:
        super().__init__()
        self.datamodules = list(datamodules)

    @property
    def label_action(self) -> LabelAction:
        return self.datamodules[0].label_action  # the copies differ only in their seed

    def prepare_data(self) -> None:
        for dm in self.datamodules:
            dm.prepare_data()

    def setup(self, stage: str | None = None) -> None:
        for dm in self.datamodules:
            dm.trainer = self.trainer  # each puts its splits on the training device
            dm.setup(stage)

    def train_dataloader(self) -> StackedBatches:
        return StackedBatches([dm.train_dataloader() for dm in self.datamodules])

    def val_dataloader(self) -> StackedBatches:
        return StackedBatches([dm.val_dataloader() for dm in self.datamodules])

    def test_dataloader(self) -> StackedBatches:
        return StackedBatches([dm.test_dataloader() for dm in self.datamodules])

    def on_after_batch_transfer(self, batch: tuple[Tensor, Tensor], dataloader_idx: int) -> tuple[Tensor, Tensor]:
        images, labels = batch
        training = self.trainer is not None and self.trainer.training
        return torch.stack([dm.prepare_batch(x, training) for dm, x in zip(self.datamodules, images)]), labels

    def calibration_batches(self, count: int, device: torch.device) -> Iterator[Tensor]:
        yield from (torch.stack(xs) for xs in zip(*(dm.calibration_batches(count, device)
                                                     for dm in self.datamodules)))


class CopyRunsToWandb(pl.Callback):
    """Streams each copy to its own W&B run after every validation: its validation accuracy, its last training
    loss and, for a relaxed net, how far each layer has moved (``relaxation/<layer>``)."""

    def __init__(self, loggers: Sequence[WandbLogger | None]) -> None:
        self.loggers = loggers

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: PackedClassifier) -> None:
        for k, logger in enumerate(self.loggers):
            if logger is None or not pl_module.alive[k]:
                continue
            logged = {m.VAL_ACC: pl_module.copy_val_acc[k], m.TRAIN_LOSS: float(pl_module.copy_losses[k]),
                      "epoch": trainer.current_epoch}
            if pl_module.relaxed:
                diagnostics = pl_module.relaxation.diagnostics(pl_module.backbone.unpack(k))
                logged.update({f"{m.RELAXATION_PREFIX}{layer}": v for layer, v in diagnostics.items()})
            logger.log_metrics(logged, step=trainer.global_step)


def check_packable(configs: Sequence[RunConfig]) -> None:
    """Refuse configurations that are not one configuration's seeds (``ValueError`` naming the field)."""
    if not configs:
        raise ValueError("a pack needs at least one configuration")
    shared = [{key: value for key, value in c.flat().items() if key not in PER_COPY} for c in configs]
    for config, settings in zip(configs, shared):
        differing = sorted(key for key in settings if settings[key] != shared[0][key])
        if differing:
            raise ValueError(f"the copies of a pack may differ only in seed; seed {config.seed} differs in "
                             f"{', '.join(differing)}")


def run_packed(configs: Sequence[RunConfig], out_dirs: Sequence[str | Path], callbacks: Sequence[pl.Callback] = (),
               enable_progress_bar: bool = False, resume_from: str | Path | None = None
               ) -> list[dict | FloatingPointError]:
    """Train ``configs`` (one configuration's seeds) as one packed model; return per copy the metrics ``run_one``
    returns, also written to its ``out_dir/metrics.json`` beside ``config.yaml`` and ``checkpoints/best.ckpt``, or
    the ``FloatingPointError`` that stopped it alone (its ``config.yaml`` written, no metrics). ``train_seconds``
    of a copy is its share of the pack's training time. ``resume_from``: a Lightning checkpoint of this pack."""
    check_packable(configs)
    if len(configs) != len(out_dirs):
        raise ValueError(f"give one output directory per configuration: {len(configs)} configurations, "
                         f"{len(out_dirs)} directories")
    config = configs[0]
    datamodules, backbones, exacts = zip(*(build_run(c) for c in configs))
    datamodule = PackedDataModule(datamodules)
    datamodule.prepare_data()  # a missing dataset fails here, before anything is written
    module = PackedClassifier(PackedModel(backbones), datamodules[0].num_classes,
                              **classifier_options(config, datamodules[0]))
    dirs = [Path(d).absolute() for d in out_dirs]
    for c, out_dir in zip(configs, dirs):
        start_run_dir(c, out_dir)
    loggers = [wandb_logger(c, out_dir, exacts[0], alongside=True) for c, out_dir in zip(configs, dirs)]
    # The caller's checkpoints only (a sweep's epoch report): the copies' best states live in the module.
    trainer = build_trainer(config, dirs[0], [CopyRunsToWandb(loggers), *callbacks],
                            enable_progress_bar=enable_progress_bar)
    with failures_end_runs(loggers, failed=module.failures):  # a failed copy's run ends failed, as its row does
        train_seconds = fit_and_test(trainer, module, datamodule, resume_from) / len(configs)
        writer = checkpoint_writer(config.hardware.accelerator)
        return [_finish_copy(module, k, datamodules[k], configs[k], exacts[k], dirs[k], loggers[k],
                             train_seconds, writer) for k in range(len(configs))]


def checkpoint_writer(accelerator: str) -> pl.Trainer:
    """A trainer that never runs: it writes each copy's checkpoint through ``Trainer.save_checkpoint``, as its own
    run's ``ModelCheckpoint`` would, since the copies trained inside the pack's module."""
    return pl.Trainer(accelerator=accelerator, devices=1, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False)


def _finish_copy(module: PackedClassifier, k: int, datamodule: EquiDataModule, config: RunConfig,
                 exact: bool | None, out_dir: Path, logger: WandbLogger | None, train_seconds: float,
                 writer: pl.Trainer) -> dict | FloatingPointError:
    """Copy k's metrics, measured on the copy unpacked, and its checkpoint (its best state as the module of its own
    run, network recipe included), written as its run writes them; or why it failed."""
    if k in module.failures:
        return FloatingPointError(module.failures[k])
    net = module.backbone.unpack(k)  # its best state: the test loaded it
    best = out_dir / "checkpoints" / "best.ckpt"
    writer.strategy.connect(EquivarianceClassifier(net, **classifier_options(config, datamodule)))
    writer.fit_loop.epoch_progress.current.completed = module.best_epochs[k]  # saved as the checkpoint's epoch
    writer.save_checkpoint(best, weights_only=True)
    tested = Best(net, module.hparams.orbit_group, module.copy_test_results[k], module.best_scores[k], best)
    return finish_run(config, out_dir, datamodule, exact, tested, train_seconds, logger)
