"""Lightning callbacks the runs use."""

from __future__ import annotations

import os
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from torch.nn.modules.batchnorm import _BatchNorm

_RESET = {"running_mean": 0.0, "running_var": 1.0, "num_batches_tracked": 0}  # as reset_running_stats leaves them


class RecalibrateBatchNorm(Callback):
    """Before each validation in ``fit``, recompute every batch-norm layer's running statistics with the current
    weights over ``num_batches`` training batches ("precise BN", Wu & Johnson 2021).

    The exponential running averages lag behind weights that still change fast (early epochs, short runs), and
    an eval-mode network then sees statistics of a network it no longer is: on a one-epoch mnist5k run this
    alone moves upright accuracy by tens of points. Needs a datamodule with ``calibration_batches(n, device)``
    (``EquiDataModule`` has one); with any other it does nothing.

    The statistics are the plain average over the batches: momentum 1/n at the n-th batch, which is what
    ``momentum=None`` computes, written so that a packed model (``PackedModel``, whose stacked buffers vmap
    updates per copy, and which cannot run ``momentum=None``) is recalibrated by the same code, copy by copy.
    """

    def __init__(self, num_batches: int = 16) -> None:
        self.num_batches = num_batches

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        batches = getattr(trainer.datamodule, "calibration_batches", None)
        net = pl_module.backbone
        layers = getattr(net, "template", net)  # a packed model's architecture; its tensors live on the pack
        norms = {name: m for name, m in layers.named_modules() if isinstance(m, _BatchNorm) and m.track_running_stats}
        if trainer.sanity_checking or batches is None or not norms or self.num_batches < 1:
            return
        with torch.no_grad():
            for name, buffer in net.named_buffers():
                owner, _, leaf = name.replace("/", ".").rpartition(".")  # a pack's names join with '/'
                if owner in norms and leaf in _RESET:
                    buffer.fill_(_RESET[leaf])
        momenta = [m.momentum for m in norms.values()]
        was_training = pl_module.training
        pl_module.train()
        with torch.no_grad():
            for n, x in enumerate(batches(self.num_batches, pl_module.device), 1):
                for m in norms.values():
                    m.momentum = 1.0 / n
                pl_module(x)
        for m, momentum in zip(norms.values(), momenta):
            m.momentum = momentum
        pl_module.train(was_training)


class MovableModelCheckpoint(ModelCheckpoint):
    """A ``ModelCheckpoint`` that resumes in another directory, its files moved along with it: a retried sweep trial
    runs wherever its node and driver put it. ``ModelCheckpoint`` itself would keep its old best path and forget the
    best score, so the first epoch after the retry would become the best whatever it scores."""

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        old = state_dict.get("dirpath")
        if old and self.dirpath and old != self.dirpath:

            def moved(path: str) -> str:
                return os.path.join(self.dirpath, os.path.relpath(path, old)) if path else path

            state_dict = {**state_dict, "dirpath": self.dirpath,
                          **{key: moved(state_dict.get(key) or "")
                             for key in ("best_model_path", "kth_best_model_path", "last_model_path")},
                          "best_k_models": {moved(path): score
                                            for path, score in state_dict.get("best_k_models", {}).items()}}
        super().load_state_dict(state_dict)
