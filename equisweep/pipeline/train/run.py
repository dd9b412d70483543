"""One training run, shared by ``equisweep train`` and the sweep trainable: ``run_one(config, out_dir) -> dict``.

It validates everything that can fail on user input (model, input size, data) before training, trains with
Lightning, tests the **best** checkpoint on validation accuracy (the test set is never used for selection),
measures the equivariance error of that checkpoint (over the group's orbit, and the Lie derivative under
continuous rotation, ``lee``, on the same sample), and writes ``metrics.json`` and ``config.yaml`` next to
``checkpoints/best.ckpt``, each through a temporary name and a rename so a reader never sees half a file.

A packed run (``packing.py``) takes the same steps: each copy built by ``build_run``, the pack trained by
``build_trainer`` and ``fit_and_test``, each copy finished by ``finish_run``. W&B runs are set up in ``tracking.py``.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, Checkpoint, ModelCheckpoint
from pytorch_lightning.loggers import Logger, WandbLogger
from torch import nn

from equisweep.datamodules import build_datamodule
from equisweep.datamodules.datamodule import EquiDataModule
from equisweep.exactness import check_exactness, equivariance_error
from equisweep.exactness.lie import OUTPUT, lie_derivative
from equisweep.files import write_atomically
from equisweep.groups import reference_group
from equisweep.models import build_model, get_relaxation
from equisweep.models.invariance import invariance_diagnostics
from equisweep.models.relaxation import Relaxation
from equisweep.pipeline import vocabulary as m
from equisweep.pipeline.train.callbacks import MovableModelCheckpoint, RecalibrateBatchNorm
from equisweep.pipeline.train.config import RunConfig
from equisweep.pipeline.train.eq_penalty import mean_orbit_change
from equisweep.pipeline.train.module import EquivarianceClassifier
from equisweep.pipeline.train.quiet import silence_litlogger_tip
from equisweep.pipeline.train.tracking import failures_end_runs, finish_with_results, wandb_logger
from equisweep.pipeline.vocabulary import is_trivial


def model_recipe(config: RunConfig, datamodule: EquiDataModule) -> dict[str, Any]:
    """The run's network as ``build_model`` arguments: the module saves them, so its checkpoints rebuild it."""
    net = config.model
    options = {} if net.dropout is None else {"dropout": net.dropout}
    return dict(name=net.model, group=net.group, num_classes=datamodule.num_classes,
                in_channels=datamodule.in_channels, width=net.width, head=net.head, backend=net.backend,
                relaxation=net.relaxation, subsampling=net.subsampling, invariance=net.invariance,
                background=datamodule.background, **options)


def build_run(config: RunConfig) -> tuple[EquiDataModule, nn.Module, bool | None]:
    """The datamodule, the network and its static exact flag (None for a network of a trivial group and no wrapper,
    which is neither exact nor approximate), built after seeding with the run's seed: a packed copy is built exactly
    as its own run."""
    pl.seed_everything(config.seed, workers=True, verbose=False)
    data = config.data
    datamodule = build_datamodule(data.dataset, data.input_size, data.train_symmetry, data.batch_size,
                                  data.data_dir, config.seed, download=data.download,
                                  eval_batch_size=data.eval_batch_size, resize_method=data.resize_method,
                                  num_workers=data.num_workers, per_batch=data.per_batch)
    backbone = build_model(**model_recipe(config, datamodule))
    report = check_exactness(backbone, config.data.input_size, model_name=config.model.model, nearest=False)
    return datamodule, backbone, None if is_trivial(report.group) else report.exact


def classifier_options(config: RunConfig, datamodule: EquiDataModule) -> dict[str, Any]:
    """The LightningModule's settings from the run's: optimiser, schedule, evaluation and the network's recipe (which
    holds its relaxation)."""
    optim = config.optim
    return dict(optimizer=optim.optimizer, lr=optim.lr, weight_decay=optim.weight_decay, momentum=optim.momentum,
                schedule=optim.schedule, step_size=optim.step_size, gamma=optim.gamma,
                eval_angles=config.evaluation.angles, background=datamodule.background,
                recipe=model_recipe(config, datamodule), eq_penalty=optim.eq_penalty,
                eq_penalty_kind=optim.eq_penalty_kind)


def measure(net: nn.Module, datamodule: EquiDataModule, samples: int, orbit_group: str,
            relaxation: Relaxation, penalised: bool = False) -> dict[str, Any]:
    """The trained network's equivariance: orbit error (output and per layer) and Lie derivative on the first
    ``samples`` test images, its parameter count, how far each relaxed layer moved (``relaxation``'s diagnostics;
    relaxed nets only), and what an invariance wrapper reports of itself and, for a ``penalised`` net, the orbit
    penalty's mean over the group on the sample (``family_diagnostics``; either only)."""
    reference = next(net.parameters())
    sample = datamodule.eval_sample(samples).to(reference.device, reference.dtype)
    errors = equivariance_error(net, sample, orbit_group)
    results = {
        m.EQ_ERROR: errors["output"]["max"],
        m.EQ_ERROR_BY_LAYER: {name: value["max"] for name, value in errors.items()},
        m.LEE: lie_derivative(net, sample, torch.tensor(datamodule.background))[OUTPUT],
        m.PARAMS: sum(p.numel() for p in net.parameters()),
    }
    departures = relaxation.diagnostics(net)
    if departures:  # as tested: the best checkpoint's layers
        results[m.RELAXATION_BY_LAYER] = departures
    family = invariance_diagnostics(net, sample)
    if penalised:
        family["orbit_change"] = mean_orbit_change(net, sample, reference_group(orbit_group))
    if family:
        results[m.FAMILY_DIAGNOSTICS] = family
    return results


def start_run_dir(config: RunConfig, out_dir: Path) -> None:
    """Create the run's directory with its ``config.yaml``: after everything that can fail on user input."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomically(out_dir / "config.yaml", config.to_yaml())


def build_trainer(config: RunConfig, out_dir: Path, callbacks: Sequence[Callback], logger: Logger | None = None,
                  enable_progress_bar: bool = True) -> pl.Trainer:
    """The trainer of a run, or of a pack (``config`` then is any copy's): the run's epochs, device, precision and
    determinism, batch norm recalibrated before each validation, then ``callbacks`` in order. It saves checkpoints only
    through a ``Checkpoint`` among them (a run's best, a sweep's epoch report), and runs no sanity validation."""
    silence_litlogger_tip()
    if not config.hardware.deterministic:
        torch.backends.cudnn.benchmark = True
    callbacks = [RecalibrateBatchNorm(config.evaluation.bn_calibration_batches), *callbacks]
    return pl.Trainer(max_epochs=config.optim.epochs, accelerator=config.hardware.accelerator, devices=1,
                      precision=config.hardware.precision, deterministic=config.hardware.deterministic,
                      logger=logger if logger is not None else False, callbacks=callbacks,
                      enable_checkpointing=any(isinstance(c, Checkpoint) for c in callbacks),
                      enable_progress_bar=enable_progress_bar, enable_model_summary=False,
                      num_sanity_val_steps=0, log_every_n_steps=10, default_root_dir=str(out_dir))


def fit_and_test(trainer: pl.Trainer, module: pl.LightningModule, datamodule: pl.LightningDataModule,
                 resume_from: str | Path | None, best: ModelCheckpoint | None = None) -> float:
    """Fit ``module`` (continuing from the checkpoint ``resume_from``), then test the best checkpoint ``best`` saved,
    or without one the module as fitting left it (a pack's holds its copies' best states); return the seconds fitting
    took."""
    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from)
    seconds = time.perf_counter() - start
    trainer.test(module, datamodule=datamodule, ckpt_path=None if best is None else best.best_model_path,
                 verbose=False)
    return seconds


@dataclass(frozen=True)
class Best:
    """A trained run's best state on validation, as its test saw it."""

    net: nn.Module
    orbit_group: str  # the group whose orbit the module tested, and the equivariance error is measured over
    tested: dict[str, Any]  # the test metrics
    val_acc: float
    checkpoint: Path  # a Lightning checkpoint of this state; its epoch is the best epoch


def finish_run(config: RunConfig, out_dir: Path, datamodule: EquiDataModule, exact: bool | None, best: Best,
               train_seconds: float, logger: WandbLogger | None) -> dict[str, Any]:
    """The run's results (its test metrics, the best validation accuracy, the static exact flag, the best network's
    equivariance measured here, the training time, the best checkpoint and its epoch): logged to its W&B run, which
    ends, then written to ``out_dir/metrics.json`` (last: a run with metrics is finished) and returned."""
    results = {
        **best.tested,
        m.VAL_ACC: best.val_acc,
        m.EXACT: exact,
        **measure(best.net, datamodule, config.evaluation.eq_error_samples, best.orbit_group,
                  get_relaxation(config.model.relaxation["method"]), penalised=config.optim.eq_penalty > 0),
        m.TRAIN_SECONDS: train_seconds,
        m.BEST_CHECKPOINT: str(best.checkpoint.relative_to(out_dir)),
        m.BEST_EPOCH: int(torch.load(best.checkpoint, weights_only=True, mmap=True)["epoch"]),
    }
    finish_with_results(logger, results)
    write_atomically(out_dir / "metrics.json", json.dumps(results, indent=1))
    return results


def run_one(config: RunConfig, out_dir: str | Path, callbacks: Sequence[Callback] = (),
            enable_progress_bar: bool = True, resume_from: str | Path | None = None,
            best_so_far: str | Path | None = None) -> dict:
    """Train, test and measure one configuration; return the metrics also written to ``out_dir/metrics.json``.

    ``resume_from`` is a Lightning checkpoint of this run to continue from (a sweep trial retried after a failure,
    maybe on another node, in another directory), and ``best_so_far`` the best checkpoint saved by then, which is put
    back in place first: the trainer state names it as the best to beat, and the test may load it.
    """
    out_dir = Path(out_dir).absolute()
    datamodule, backbone, exact = build_run(config)
    datamodule.prepare_data()  # a missing dataset fails here, before anything is written
    module = EquivarianceClassifier(backbone, datamodule.num_classes, channels_last=config.hardware.channels_last,
                                    **classifier_options(config, datamodule))

    start_run_dir(config, out_dir)
    best = out_dir / "checkpoints" / "best.ckpt"
    if best_so_far is not None:
        best.parent.mkdir(exist_ok=True)
        shutil.copyfile(best_so_far, best)
    checkpoint = MovableModelCheckpoint(dirpath=best.parent, filename=best.stem, monitor=m.VAL_ACC, mode="max",
                                        save_top_k=1, enable_version_counter=False)
    logger = wandb_logger(config, out_dir, exact)
    trainer = build_trainer(config, out_dir, [checkpoint, *callbacks], logger, enable_progress_bar)
    with failures_end_runs([logger]):
        train_seconds = fit_and_test(trainer, module, datamodule, resume_from, best=checkpoint)
        tested = Best(module.backbone, module.hparams.orbit_group, module.test_results,
                      float(checkpoint.best_model_score), Path(checkpoint.best_model_path))
        return finish_run(config, out_dir, datamodule, exact, tested, train_seconds, logger)
