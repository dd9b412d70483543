"""EquivarianceClassifier on its own: in someone else's training script, its views and its checkpoints."""

import importlib.util
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from equisweep.models import build_model
from equisweep.models.relaxation import resolve_relaxation
from equisweep.models.relaxed_gconv import RelaxedMixin
from equisweep.pipeline import EquivarianceClassifier

EXAMPLE = Path(__file__).parents[3] / "examples" / "own_datamodule.py"


@pytest.mark.trains
def test_example_with_a_users_own_datamodule_and_plain_trainer():
    spec = importlib.util.spec_from_file_location("own_datamodule", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    results = example.main(max_epochs=1, limit_train_batches=40)
    assert set(results) == {"test_acc_upright", "test_acc_orbit", "test_acc_by_angle", "test_acc_mean_angles",
                            "test_acc_min_angles"}
    assert list(results["test_acc_by_angle"]) == [0.0, 45.0, 90.0]
    # 40 steps: clear of chance (0.1, four standard errors below 0.15) already; 0.26 to 0.33 over seeds
    assert results["test_acc_upright"] > 0.15
    # exact p4 net at 28: the orbit's four quarter turns are all equally good
    assert results["test_acc_by_angle"][90.0] == results["test_acc_upright"] == results["test_acc_orbit"]


def test_views_cover_the_orbit_without_repeats():
    module = EquivarianceClassifier(build_model("p4cnn", "p4m"), 10, eval_angles=[0, 90, 45])
    assert [v.name for v in module.views] == ["r0", "r90", "r180", "r270", "r0m", "r90m", "r180m", "r270m", "r45"]
    z2 = EquivarianceClassifier(build_model("p4cnn", "z2"), 10, eval_angles=[0])
    assert z2.hparams.orbit_group == "p4" and len(z2.orbit) == 4


def test_checkpoint_loads_with_weights_only_and_restores_the_module(tmp_path):
    x, y = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    module = EquivarianceClassifier(build_model("p4cnn", "p4"), 10, optimizer="sgd", schedule="cosine")
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_progress_bar=False, default_root_dir=tmp_path,
                         accelerator="cpu")
    trainer.fit(module, loader, loader)
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    state = torch.load(path, weights_only=True)
    assert state["hyper_parameters"]["optimizer"] == "sgd"
    restored = EquivarianceClassifier.load_from_checkpoint(path, backbone=build_model("p4cnn", "p4"))
    restored.eval()
    module.eval()
    assert torch.equal(restored(x), module(x))


@pytest.mark.parametrize("group", ["z2", "p4", "p4m"])
def test_channels_last_gives_the_same_logits(group):
    torch.manual_seed(0)
    net = build_model("p4cnn", group=group).eval()
    x = torch.randn(4, 1, 28, 28)
    expected = net(x)
    module = EquivarianceClassifier(net, 10, channels_last=True).eval()
    conv_weights = [p for p in module.backbone.parameters() if p.dim() == 4]
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in conv_weights)
    torch.testing.assert_close(module(x), expected, rtol=1e-4, atol=1e-5)
    module.train()(x).sum().backward()  # and it trains: every filter bank gets a finite gradient
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in module.parameters() if p.requires_grad)


class _LossCheck(pl.Callback):
    """Before each backward: the loss Lightning got against cross-entropy plus ``penalty`` recomputed on the batch."""

    def __init__(self, penalty) -> None:
        self.penalty, self.checked = penalty, []

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        x, y = batch
        with torch.no_grad():
            self.ce = torch.nn.functional.cross_entropy(module(x), y)
            self.term = self.penalty(module.backbone)

    def on_before_backward(self, trainer, module, loss) -> None:
        self.checked.append((float(loss.detach()), float(self.ce), float(self.term)))


@pytest.mark.parametrize("relaxation", ["none", {"method": "relaxed", "alpha": 0.05}], ids=["none", "relaxed"])
def test_training_loss_is_cross_entropy_plus_the_relaxation_penalty(relaxation, tmp_path):
    torch.manual_seed(0)
    x, y = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))
    net = build_model("p4cnn", "p4", relaxation=relaxation)
    with torch.no_grad():  # untie the relaxed weights by hand: the penalty is then clearly above zero
        for module in net.modules():
            if isinstance(module, RelaxedMixin):
                module.relaxed_weights.add_(0.5 * torch.randn_like(module.relaxed_weights))
    record, options = resolve_relaxation(relaxation)
    check = _LossCheck(lambda backbone: record.penalty(backbone, options) if record.penalty else torch.zeros(()))
    module = EquivarianceClassifier(net, 10, relaxation=relaxation)
    trainer = pl.Trainer(max_steps=2, logger=False, enable_progress_bar=False, default_root_dir=tmp_path,
                         accelerator="cpu", callbacks=[check], enable_checkpointing=False)
    trainer.fit(module, DataLoader(TensorDataset(x, y), batch_size=8))
    assert len(check.checked) == 2
    for loss, ce, term in check.checked:
        assert loss == pytest.approx(ce + term, rel=1e-5)
        assert (term > 0.01) if record.name == "relaxed" else (term == 0 and loss == pytest.approx(ce, rel=1e-5))
    logged = {k for k in trainer.callback_metrics if k.startswith("relaxation/")}
    diagnostics = record.diagnostics(net)
    assert logged == {f"relaxation/{layer}" for layer in diagnostics}
    assert module.relaxed == (record.name != "none") and bool(diagnostics) == module.relaxed
    assert all(float(trainer.callback_metrics[f"relaxation/{k}"]) == pytest.approx(v) for k, v in diagnostics.items())


def test_the_relaxation_is_the_recipes_kept_whole_and_must_match_the_backbones_layers():
    recipe = dict(name="p4cnn", num_classes=10, width=2, relaxation={"method": "rpp", "free_wd": 2.0})
    module = EquivarianceClassifier(recipe=recipe)
    assert module.hparams.relaxation == {"method": "rpp", "free_wd": 2.0, "equiv_wd": 1e-5}
    assert module.relaxation.name == "rpp" and module.relaxation_options.free_wd == 2.0
    with pytest.raises(ValueError, match="relaxation: the backbone has relaxed layers but relaxation is 'none'"):
        EquivarianceClassifier(build_model("p4cnn", width=2, relaxation="rpp"), 10)
    with pytest.raises(ValueError, match="relaxation: the backbone has no relaxed layers but relaxation is 'rpp'"):
        EquivarianceClassifier(build_model("p4cnn", width=2), 10, relaxation="rpp")
