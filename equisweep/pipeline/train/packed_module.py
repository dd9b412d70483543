"""``PackedClassifier``: the LightningModule of a pack, K seed-runs of one configuration trained as one model.

It is ``EquivarianceClassifier`` (the same optimiser, schedule, views and metrics) over a ``PackedModel``, with
everything a run owns kept per copy: the loss (the packed loss is the sum of the copies' mean losses, so each
copy's gradient is its own run's), validation accuracy, best-on-validation state, test accuracies. One optimiser
over the stacked tensors is K optimisers, as Adam, AdamW and SGD with weight decay act elementwise (nothing here
clips gradients, which would mix copies); schedules depend on the step count alone.

A copy whose training loss turns non-finite fails alone: it leaves the loss, its gradients are zeroed (its frozen
non-finite weights still send NaN through the backward pass, and under ``16-mixed`` the one GradScaler of the pack
would find it and skip every step of every copy), its tensors are restored after every step to what they were
before the step that found it (so it is frozen), and ``failures`` keeps its reason, while the others go on. When no
copy is left, the pack fails as a run does. Under ``16-mixed`` the copies still share one loss scale: until a dying
copy is found (at most ``NON_FINITE_CHECK_EVERY`` steps), and whenever one copy's gradients overflow, the step is
skipped for all.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from equisweep.models.packed import PackedModel
from equisweep.pipeline import vocabulary as m
from equisweep.pipeline.train.module import NON_FINITE_CHECK_EVERY, EquivarianceClassifier

# What a pack carries in its Lightning checkpoint besides the stacked tensors, so a retried pack resumes whole.
_PER_COPY_STATE = ("alive", "failures", "best_scores", "best_epochs", "best_states", "frozen")


class PackedClassifier(EquivarianceClassifier):
    """Images [K, B, ...] and labels [K, B], copy k's batch in slot k. After ``fit``: ``best_scores``,
    ``best_epochs``, ``best_states`` and ``failures`` per copy; after ``test``: ``copy_test_results`` [K]."""

    def __init__(self, backbone: PackedModel, num_classes: int, **options: Any) -> None:
        if options.get("channels_last"):
            raise ValueError("channels_last: a pack stacks its copies on a leading axis; set channels_last: false")
        super().__init__(backbone, num_classes, **options)
        k = backbone.copies
        self.alive = [True] * k
        self.failures: dict[int, str] = {}
        self.frozen: dict[int, dict[str, Tensor]] = {}
        self.copy_losses = torch.zeros(k)  # the last step's
        self.copy_val_acc = [float("nan")] * k  # the last validation's
        self.best_scores = [float("-inf")] * k
        self.best_epochs = [0] * k
        self.best_states: list[dict[str, Tensor] | None] = [None] * k
        self.copy_test_results: list[dict] = []
        self._val = torch.zeros(2, k, dtype=torch.long)  # correct, seen
        self._test = torch.zeros(len(self.views), 2, k, dtype=torch.long)

    @staticmethod
    def architecture(backbone: PackedModel) -> nn.Module:
        """The copies' shared architecture."""
        return backbone.template

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        logits = self(x)  # [K, B, classes]
        losses = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(y.shape).mean(1)
        losses = losses + self.method_terms(x, logits)
        # As a run does: read the losses (a device wait) every few steps and at the last batch.
        if batch_idx % NON_FINITE_CHECK_EVERY == 0 or self.trainer.is_last_batch:
            for k, loss in enumerate(losses.detach().tolist()):
                if self.alive[k] and not math.isfinite(loss):
                    self._fail(k, f"training loss is {loss} at step {self.global_step}; lower lr")
        self.copy_losses = losses.detach()
        alive = torch.tensor(self.alive, device=losses.device)
        loss = torch.where(alive, losses, torch.zeros_like(losses)).sum()
        self.log(m.TRAIN_LOSS, loss / sum(self.alive), prog_bar=True)  # the mean over live copies
        return loss

    def each_copy(self, fn: Callable[..., Tensor], *batched: Tensor) -> Tensor:
        return self.backbone.per_copy(fn, *batched)

    def _fail(self, k: int, reason: str) -> None:
        self.alive[k] = False
        self.failures[k] = reason
        self.frozen[k] = self.backbone.copy_state(k)
        if not any(self.alive):
            raise FloatingPointError(f"every copy of the pack failed; copy {k}: {reason}")

    def on_after_backward(self) -> None:
        """Zero the failed copies' gradients before the optimiser (and a GradScaler's unscaling) sees them."""
        failed = [k for k, alive in enumerate(self.alive) if not alive]
        if failed:
            for tensor in self.backbone.parameters():
                if tensor.grad is not None:
                    tensor.grad[failed] = 0

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        for k, state in self.frozen.items():  # elementwise optimisers: restoring a slice undoes its update alone
            self.backbone.load_copy_state(k, state)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        self._val += torch.stack([(self(x).argmax(-1) == y).sum(1), torch.full_like(y[:, 0], y.shape[1])]).cpu()

    def on_validation_epoch_end(self) -> None:
        """Keep each live copy's state when its validation accuracy beats its best (ties keep the earlier)."""
        correct, seen = self._val.clone()
        self._val.zero_()
        self.copy_val_acc = (correct.float() / seen.float()).tolist()  # float32, as torchmetrics computes it
        for k, accuracy in enumerate(self.copy_val_acc):
            if self.alive[k] and accuracy > self.best_scores[k]:
                self.best_scores[k], self.best_epochs[k] = accuracy, self.current_epoch
                self.best_states[k] = self.backbone.copy_state(k)
        live = [a for a, ok in zip(self.copy_val_acc, self.alive) if ok]
        self.log(m.VAL_ACC, sum(live) / len(live), prog_bar=True)  # what a scheduler judges the pack by

    def on_test_start(self) -> None:
        for k, state in enumerate(self.best_states):
            if state is not None:
                self.backbone.load_copy_state(k, state)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        for view, labels in self.view_labels(y):
            seen = view.apply(x.flatten(0, 1), self.background).view_as(x)
            correct = (self(seen).argmax(-1) == labels).sum(1)
            self._test[self.views.index(view)] += torch.stack([correct, torch.full_like(correct, y.shape[1])]).cpu()

    def on_test_epoch_end(self) -> None:
        correct, seen = self._test.clone().unbind(1)  # [views, K] each
        self._test.zero_()
        self.copy_test_results = [self.summarise({v: float(a) for v, a, n in zip(self.views, acc, count) if n})
                                  for acc, count in zip((correct.float() / seen.float()).T, seen.T)]  # n = 0: undefined

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["packed_copies"] = {name: getattr(self, name) for name in _PER_COPY_STATE}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        for name, value in checkpoint["packed_copies"].items():
            setattr(self, name, value)
