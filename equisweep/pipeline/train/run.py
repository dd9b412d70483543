"""One training run, shared by ``equisweep train`` and the sweep trainable: ``run_one(config, out_dir) -> dict``.

It validates everything that can fail on user input (model, input size, data) before training, trains with
Lightning, tests the **best** checkpoint on validation accuracy (the test set is never used for selection),
measures the equivariance error of that checkpoint (over the group's orbit, and the Lie derivative under
continuous rotation, ``lee``, on the same sample), and writes ``metrics.json`` and ``config.yaml`` next to
``checkpoints/best.ckpt``, each through a temporary name and a rename so a reader never sees half a file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.loggers import WandbLogger
from torch import nn

from equisweep.datamodules import build_datamodule
from equisweep.datamodules.datamodule import EquiDataModule
from equisweep.exactness import check_exactness, equivariance_error
from equisweep.exactness.lie import OUTPUT, lie_derivative
from equisweep.files import write_atomically
from equisweep.models import build_model
from equisweep.models.relaxation import Relaxation
from equisweep.pipeline import vocabulary as m
from equisweep.pipeline.train.callbacks import MovableModelCheckpoint, RecalibrateBatchNorm
from equisweep.pipeline.train.config import RunConfig
from equisweep.pipeline.train.module import EquivarianceClassifier
from equisweep.pipeline.train.quiet import silence_litlogger_tip, without_anonymous
from equisweep.pipeline.train.tracking import flat_summary
from equisweep.pipeline.vocabulary import arm_label, is_trivial

log = logging.getLogger(__name__)


def wandb_run_id(config: RunConfig, out_dir: Path) -> str:
    """A stable W&B id for this run: a hash of its group (the sweep) and name (the trial), or of its directory when
    it has no group, so a retried or resumed trial continues its run instead of starting another."""
    identity = f"{config.wandb.group}/{config.run_name or out_dir.name}" if config.wandb.group else str(out_dir)
    return hashlib.sha256(f"{config.wandb.project}/{identity}".encode()).hexdigest()[:16]


def wandb_logger(config: RunConfig, out_dir: Path, exact: bool | None, alongside: bool = False
                 ) -> WandbLogger | None:
    """The run's W&B logger, or None when W&B is disabled. ``alongside``: other runs stay open in this process (the
    copies of a pack), else starting it finishes the previous run."""
    mode = config.wandb.resolved_mode()
    if mode == "disabled":
        return None
    net, size = config.model, config.data.input_size
    arm = arm_label(net.group, size, exact, net.relaxation["method"], net.subsampling)
    kind = "plain" if exact is None else "exact" if exact else "approx"
    tags = list(dict.fromkeys([*config.wandb.tags, arm, net.group, f"size-{size}", kind]))
    # A user's WANDB_DIR is where runs go; otherwise next to the run's output.
    save_dir = os.environ.get("WANDB_DIR") or str(out_dir)
    # The mode goes to wandb.init for this run only; WandbLogger(offline=True) would set WANDB_MODE process-wide.
    return without_anonymous(WandbLogger(
        project=config.wandb.project, entity=config.wandb.entity, group=config.wandb.group,
        name=config.run_name or out_dir.name, id=wandb_run_id(config, out_dir), resume="allow", job_type=arm,
        tags=tags, save_dir=save_dir, mode=mode, config=config.flat(mode="json"),
        reinit="create_new" if alongside else "finish_previous"))


def log_final_to_wandb(logger: WandbLogger, results: dict) -> None:
    """The angle sweep as a table and a plot, and every metric in the run's summary."""
    import wandb

    by_angle = results[m.TEST_ACC_BY_ANGLE]
    table = wandb.Table(columns=["angle", "accuracy"], data=[[float(a), acc] for a, acc in by_angle.items()])
    logger.experiment.log({"test_acc_by_angle_table": table,
                           "test_acc_by_angle_plot": wandb.plot.line(table, "angle", "accuracy",
                                                                     title="test accuracy by rotation angle")})
    logger.experiment.summary.update(flat_summary(results))


def model_recipe(config: RunConfig, datamodule: EquiDataModule) -> dict[str, Any]:
    """The run's network as ``build_model`` arguments: the module saves them, so its checkpoints rebuild it."""
    net = config.model
    options = {} if net.dropout is None else {"dropout": net.dropout}
    return dict(name=net.model, group=net.group, num_classes=datamodule.num_classes,
                in_channels=datamodule.in_channels, width=net.width, head=net.head, backend=net.backend,
                relaxation=net.relaxation, subsampling=net.subsampling, **options)


def build_run(config: RunConfig) -> tuple[EquiDataModule, nn.Module, bool | None]:
    """The datamodule, the network and its static exact flag (None for a trivial group, which is neither exact nor
    approximate), built after seeding with the run's seed: a packed copy is built exactly as its own run."""
    pl.seed_everything(config.seed, workers=True, verbose=False)
    data = config.data
    datamodule = build_datamodule(data.dataset, data.input_size, data.train_symmetry, data.batch_size,
                                  data.data_dir, config.seed, download=data.download,
                                  eval_batch_size=data.eval_batch_size, resize_method=data.resize_method,
                                  num_workers=data.num_workers, per_batch=data.per_batch)
    backbone = build_model(**model_recipe(config, datamodule))
    report = check_exactness(backbone, config.data.input_size, model_name=config.model.model, nearest=False)
    return datamodule, backbone, None if is_trivial(config.model.group) else report.exact


def classifier_options(config: RunConfig, datamodule: EquiDataModule) -> dict[str, Any]:
    """The LightningModule's settings from the run's: optimiser, schedule, evaluation and the network's recipe (which
    holds its relaxation)."""
    optim = config.optim
    return dict(optimizer=optim.optimizer, lr=optim.lr, weight_decay=optim.weight_decay, momentum=optim.momentum,
                schedule=optim.schedule, step_size=optim.step_size, gamma=optim.gamma,
                eval_angles=config.evaluation.angles,
                background=datamodule.background, recipe=model_recipe(config, datamodule))


def measure(net: nn.Module, datamodule: EquiDataModule, samples: int, orbit_group: str,
            relaxation: Relaxation) -> dict[str, Any]:
    """The trained network's equivariance: orbit error (output and per layer) and Lie derivative on the first
    ``samples`` test images, its parameter count, and how far each relaxed layer moved (``relaxation``'s diagnostics;
    relaxed nets only)."""
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

    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomically(out_dir / "config.yaml", config.to_yaml())
    best = out_dir / "checkpoints" / "best.ckpt"
    if best_so_far is not None:
        best.parent.mkdir(exist_ok=True)
        shutil.copyfile(best_so_far, best)
    checkpoint = MovableModelCheckpoint(dirpath=best.parent, filename=best.stem, monitor=m.VAL_ACC, mode="max",
                                        save_top_k=1, enable_version_counter=False)
    logger = wandb_logger(config, out_dir, exact)
    silence_litlogger_tip()
    if not config.hardware.deterministic:
        torch.backends.cudnn.benchmark = True
    own = [RecalibrateBatchNorm(config.evaluation.bn_calibration_batches), checkpoint]
    trainer = pl.Trainer(max_epochs=config.optim.epochs, accelerator=config.hardware.accelerator, devices=1,
                         precision=config.hardware.precision, deterministic=config.hardware.deterministic,
                         logger=logger if logger is not None else False, callbacks=[*own, *callbacks],
                         enable_progress_bar=enable_progress_bar, enable_model_summary=False,
                         num_sanity_val_steps=0, log_every_n_steps=10, default_root_dir=str(out_dir))
    try:
        start = time.perf_counter()
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from)
        train_seconds = time.perf_counter() - start
        trainer.test(module, datamodule=datamodule, ckpt_path=checkpoint.best_model_path, verbose=False)
        results = {
            **module.test_results,
            m.VAL_ACC: float(checkpoint.best_model_score),
            m.EXACT: exact,
            **measure(module.backbone, datamodule, config.evaluation.eq_error_samples, module.hparams.orbit_group,
                      module.relaxation),
            m.TRAIN_SECONDS: train_seconds,
            m.BEST_CHECKPOINT: str(Path(checkpoint.best_model_path).relative_to(out_dir)),
            m.BEST_EPOCH: int(torch.load(checkpoint.best_model_path, weights_only=True, mmap=True)["epoch"]),
        }
        if logger is not None:
            log_final_to_wandb(logger, results)
    finally:
        if logger is not None:
            logger.experiment.finish()
    write_atomically(out_dir / "metrics.json", json.dumps(results, indent=1))
    return results
