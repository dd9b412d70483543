"""``EquivarianceClassifier``: the LightningModule that trains any logits-returning backbone and evaluates it
with the paper's protocol (upright, group orbit, angle sweep).

It takes a built ``nn.Module`` (from ``build_model`` or your own), or the ``build_model`` arguments that build one
(``recipe``), plus typed optimiser and schedule arguments. The network itself stays out of the saved
hyperparameters, its recipe goes in, so a checkpoint of a module given a recipe loads with
``load_from_checkpoint(path)`` alone. It keeps one torchmetrics object per stage and per evaluation view, and never
moves tensors itself. Test batches are expected upright and normalised; each view (a rotation,
optionally after a mirror) is applied here, exactly (``rot90``/``flip``) for multiples of 90 degrees, with
``background`` filling the corners otherwise, and scored against the labels the test data's ``label_action`` gives
the turned images: a view whose labels it leaves undefined is skipped, and a metric with no view left is NaN.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, get_args

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from equisweep.datamodules.label_action import INVARIANT
from equisweep.datamodules.regimes import angle_grid, rotate
from equisweep.groups import P4, reference_group
from equisweep.models import build_model
from equisweep.models.invariance import invariance_of
from equisweep.models.relaxation import (
    FIELD,
    NO_RELAXATION,
    Relaxation,
    has_relaxed_layers,
    relaxation_settings,
    resolve_relaxation,
)
from equisweep.pipeline import vocabulary as m
from equisweep.pipeline.train.config import Optimizer, Schedule
from equisweep.pipeline.train.eq_penalty import PENALTY_KINDS, equivariance_penalty

OPTIMIZERS = get_args(Optimizer)
SCHEDULES = get_args(Schedule)


NON_FINITE_CHECK_EVERY = 10  # training steps between checks that the loss is finite


@dataclass(frozen=True)
class View:
    """Mirror left-right (optionally), then rotate counter-clockwise by ``angle`` degrees."""

    angle: float
    mirror: bool = False

    @property
    def name(self) -> str:
        return f"r{self.angle:g}{'m' if self.mirror else ''}".replace(".", "_")

    def apply(self, x: Tensor, background: Tensor) -> Tensor:
        if self.mirror:
            x = x.flip(-1)
        if self.angle % 360 == 0:
            return x
        return rotate(x, torch.full((x.shape[0],), float(self.angle), dtype=torch.float64), background)


class EquivarianceClassifier(pl.LightningModule):
    """Cross-entropy classification of images by ``backbone`` (images -> logits [B, num_classes]).

    ``relaxation``: the method of the backbone's relaxed layers (``build_model(..., relaxation=...)``), a registered
    method's name or ``{method: name, **options}``; it defaults to the recipe's, else ``none``. The module learns the
    method from its record: it trains on cross-entropy plus the record's penalty with these options, and logs the
    record's diagnostics (how far each relaxed layer has moved from exact) as ``relaxation/<layer>`` every epoch;
    with ``none`` the loss is the cross-entropy alone. Its hyperparameters keep it as the full mapping. A backbone
    behind an invariance wrapper (``build_model(..., invariance=...)``) adds the wrapper's own term, and
    ``eq_penalty`` λ > 0 adds λ times the soft-equivariance penalty ``eq_penalty_kind`` (orbit | lie, see
    ``eq_penalty.py``) over ``orbit_group``.

    ``recipe``: the ``build_model`` arguments of the backbone (name, group, num_classes, ...). Without a backbone the
    module builds it from them; with one, they are only saved, so that ``load_from_checkpoint(path)`` can rebuild
    it. A backbone of your own has no recipe: pass it again, ``load_from_checkpoint(path, backbone=net)``.
    ``num_classes`` defaults to the recipe's.
    """

    def __init__(self, backbone: nn.Module | None = None, num_classes: int | None = None, optimizer: str = "adam",
                 lr: float = 1e-3, weight_decay: float = 0.0, momentum: float = 0.9, schedule: str = "none",
                 step_size: int = 10, gamma: float = 0.5, eval_angles: Sequence[float] | None = None,
                 orbit_group: str | None = None, background: float | Sequence[float] = 0.0,
                 channels_last: bool = False, relaxation: str | Mapping[str, Any] | None = None,
                 recipe: dict[str, Any] | None = None, eq_penalty: float = 0.0,
                 eq_penalty_kind: str = "orbit") -> None:
        super().__init__()
        if backbone is None:
            if recipe is None:
                raise ValueError("give a backbone, or recipe: the build_model arguments that build it")
            backbone = build_model(**recipe)
        num_classes = num_classes or (recipe or {}).get("num_classes")
        if not num_classes:
            raise ValueError("num_classes: give the number of classes the backbone tells apart")
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
        if not eq_penalty >= 0:
            raise ValueError(f"eq_penalty must be at least 0, got {eq_penalty!r}")
        if eq_penalty_kind not in PENALTY_KINDS:
            raise ValueError(f"eq_penalty_kind must be one of {', '.join(PENALTY_KINDS)}, got {eq_penalty_kind!r}")
        eval_angles = [float(a) for a in (eval_angles if eval_angles is not None else angle_grid())]
        g = reference_group(orbit_group or getattr(backbone, "group", P4))
        if relaxation is None:
            relaxation = (recipe or {}).get(FIELD, NO_RELAXATION)
        self.relaxation, self.relaxation_options = resolve_relaxation(relaxation)
        _check_relaxed_layers(self.relaxation, self.architecture(backbone))
        self.relaxed = self.relaxation.name != NO_RELAXATION
        self.invariance = invariance_of(self.architecture(backbone))
        self.orbit_group = g
        self.save_hyperparameters(ignore=["backbone"])
        self.hparams.update(eval_angles=eval_angles, orbit_group=g.name, relaxation=relaxation_settings(relaxation))
        self.backbone = _to_channels_last(backbone) if channels_last else backbone
        self.register_buffer("background", torch.as_tensor(background, dtype=torch.float32).reshape(-1),
                             persistent=False)
        self.upright = View(0.0)
        self.orbit = [View(90.0 * (4 * e.rotation // g.rotations), bool(e.mirror)) for e in g.grid_elements]
        self.angle_views = [View(a % 360) for a in eval_angles]
        self.views = list(dict.fromkeys([self.upright, *self.orbit, *self.angle_views]))
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = nn.ModuleDict({v.name: MulticlassAccuracy(num_classes, average="micro") for v in self.views})
        self.test_results: dict = {}

    @staticmethod
    def architecture(backbone: nn.Module) -> nn.Module:
        """The network whose layers the relaxation is checked against: the backbone itself."""
        return backbone

    def forward(self, x: Tensor) -> Tensor:
        x = x.to(self.dtype)  # batches are prepared in float32 after Lightning's precision cast (64-true, 16-true)
        if self.hparams.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.backbone(x)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y) + self.method_terms(x, logits)
        # Reading the loss waits for the device: check every few steps (a diverged net stays non-finite) and last.
        checked = batch_idx % NON_FINITE_CHECK_EVERY == 0 or self.trainer.is_last_batch
        if checked and not torch.isfinite(loss):
            raise FloatingPointError(f"training loss is {loss.item()} at step {self.global_step}; lower lr")
        self.train_acc(logits, y)
        self.log(m.TRAIN_LOSS, loss, prog_bar=True)
        self.log(m.TRAIN_ACC, self.train_acc, on_step=False, on_epoch=True)
        return loss

    def method_terms(self, x: Tensor, logits: Tensor) -> Tensor | float:
        """The methods' terms of the training loss on the batch ``x`` with ``logits`` (one per copy of a pack, each
        logged as their mean): the relaxation's penalty, the invariance wrapper's term, λ times the equivariance
        penalty."""
        x = x.to(self.dtype)
        total: Tensor | float = 0.0
        if self.relaxation.penalty is not None:
            penalty = self.each_copy(lambda net: self.relaxation.penalty(net, self.relaxation_options))
            self.log(m.RELAXATION_PENALTY, penalty.mean())
            total = total + penalty
        if self.invariance is not None and self.invariance.loss is not None:
            term = self.each_copy(lambda net, images: self.invariance.loss(net, images, net.options), x)
            self.log(m.INVARIANCE_LOSS, term.mean())
            total = total + term
        if self.hparams.eq_penalty > 0:
            penalty = equivariance_penalty(self.hparams.eq_penalty_kind, self, x, logits, self.orbit_group,
                                           self.background.to(x.dtype))
            self.log(m.EQ_PENALTY_TERM, penalty.mean())
            total = total + self.hparams.eq_penalty * penalty
        return total

    def each_copy(self, fn: Callable[..., Tensor], *batched: Tensor) -> Tensor:
        """``fn(network, *batched)``: of the backbone here, of each copy of a pack (stacked) in a pack."""
        return fn(self.backbone, *batched)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if self.relaxation.anneal is not None:  # the method's own schedule, by the fraction of training done
            progress = min(1.0, self.global_step / max(1.0, self.trainer.estimated_stepping_batches))
            self.relaxation.anneal(self.architecture(self.backbone), self.relaxation_options, progress)

    def on_train_epoch_end(self) -> None:
        if self.relaxed:
            self.log_dict({f"{m.RELAXATION_PREFIX}{layer}": value
                           for layer, value in self.relaxation.diagnostics(self.backbone).items()})

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        self.val_acc(self(x), y)
        self.log(m.VAL_ACC, self.val_acc, on_step=False, on_epoch=True, prog_bar=True)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        for view, labels in self.view_labels(y):
            self.test_acc[view.name].update(self(view.apply(x, self.background)), labels)

    def view_labels(self, labels: Tensor) -> list[tuple[View, Tensor]]:
        """Each test view whose labels the test data defines, with those labels (its datamodule's ``label_action``;
        labels are invariant without one): where labels break the symmetry, a turned image may be another class, or
        none."""
        action = getattr(self.trainer.datamodule, "label_action", INVARIANT)
        turned = [(view, action.relabel(labels, view.angle, view.mirror)) for view in self.views]
        return [(view, moved) for view, moved in turned if moved is not None]

    def on_test_epoch_end(self) -> None:
        self.test_results = self.summarise({view: float(self.test_acc[view.name].compute()) for view in self.views
                                            if self.test_acc[view.name].update_called})
        for metric in self.test_acc.values():
            metric.reset()
        self.log_dict({k: v for k, v in self.test_results.items() if isinstance(v, float)})

    def summarise(self, acc: dict[View, float]) -> dict:
        """The protocol's test metrics from the accuracy of every view scored: upright, orbit mean, angle sweep. A view
        missing from ``acc`` (its labels undefined) is left out: of the orbit, of the sweep, of its mean and minimum,
        which are NaN when no view is left."""
        by_angle = {a: acc[v] for a, v in zip(self.hparams.eval_angles, self.angle_views) if v in acc}
        orbit = [acc[v] for v in self.orbit if v in acc]
        return {
            m.TEST_ACC_UPRIGHT: acc[self.upright],
            m.TEST_ACC_ORBIT: sum(orbit) / len(orbit) if orbit else math.nan,
            m.TEST_ACC_BY_ANGLE: by_angle,
            m.TEST_ACC_MEAN_ANGLES: sum(by_angle.values()) / len(by_angle) if by_angle else math.nan,
            m.TEST_ACC_MIN_ANGLES: min(by_angle.values(), default=math.nan),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Take the weights in the precision they were saved in (float64 under ``64-true``): loading them into this
        module's float32 tensors would round them."""
        saved = next((t.dtype for t in checkpoint["state_dict"].values() if t.is_floating_point()), self.dtype)
        self.to(saved)

    def configure_optimizers(self):
        hp = self.hparams
        # the method's record may give some parameters settings of their own (a learning rate, say)
        params = self.relaxation.optimizer_groups(self.relaxation_options, self.backbone.named_parameters(),
                                                  lr=hp.lr, weight_decay=hp.weight_decay)
        if hp.optimizer == "sgd":
            optimizer = torch.optim.SGD(params, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay)
        else:
            cls = torch.optim.Adam if hp.optimizer == "adam" else torch.optim.AdamW
            optimizer = cls(params, lr=hp.lr, weight_decay=hp.weight_decay)
        if hp.schedule == "none":
            return optimizer
        if hp.schedule == "step":  # per epoch, as the paper's StepLR
            scheduler = torch.optim.lr_scheduler.StepLR(optimizer, hp.step_size, hp.gamma)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
        steps = int(self.trainer.estimated_stepping_batches)
        if hp.schedule == "cosine":
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
        else:
            max_lr = [group["lr"] for group in optimizer.param_groups]
            scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def _check_relaxed_layers(relaxation: Relaxation, network: nn.Module) -> None:
    """Refuse a relaxation that does not match the network's layers: its penalty would miss them."""
    if has_relaxed_layers(network) != (relaxation.name != NO_RELAXATION):
        has = "has relaxed layers" if has_relaxed_layers(network) else "has no relaxed layers"
        raise ValueError(f"relaxation: the backbone {has} but relaxation is {relaxation.name!r}; give the relaxation "
                         "it was built with (build_model's relaxation)")


def _to_channels_last(net: nn.Module) -> nn.Module:
    """Put every 4-D parameter and buffer in channels-last layout. ``Module.to(memory_format=...)`` refuses the 5-D
    filter banks of group convolutions (their expanded 4-D filters are built on the fly)."""
    with torch.no_grad():
        for tensor in [*net.parameters(), *net.buffers()]:
            if tensor.dim() == 4:
                tensor.data = tensor.data.contiguous(memory_format=torch.channels_last)
    return net
