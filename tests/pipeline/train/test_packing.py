"""Packed training: K seeds as one model give each seed's own run, copy by copy, and a diverging copy fails alone."""

from __future__ import annotations

import json

import pytest
import pytorch_lightning as pl
import torch

from equisweep.models import build_model
from equisweep.models.packed import PackedModel
from equisweep.models.relaxation import resolve_relaxation
from equisweep.pipeline import vocabulary as m
from equisweep.pipeline.train.config import RunConfig
from equisweep.pipeline.train.packing import run_packed
from equisweep.pipeline.train.run import run_one

SEEDS = (0, 1, 2)


class CopyLosses(pl.Callback):
    """Every step's training loss of each copy (a packed run) or of the run (an unpacked one)."""

    def __init__(self) -> None:
        self.losses: list[list[float]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        copies = getattr(pl_module, "copy_losses", None)
        self.losses.append(copies.tolist() if copies is not None else [float(outputs["loss"])])


def tiny(seed: int, **settings) -> RunConfig:
    """Three steps an epoch (200-image batches of mnist69's 600 training digits) of a width-2 net on digits resized to
    12 pixels (float64 convolutions are slow on a CPU: a fifth of the pixels of 28), evaluated at two angles."""
    base = dict(dataset="mnist69", input_size=12, width=2, epochs=2, batch_size=200, eval_batch_size=200,
                angles=[0, 45], eq_error_samples=4, bn_calibration_batches=1, train_symmetry="c4", num_workers=0,
                accelerator="cpu", wandb={"mode": "disabled"}, lr=3e-3)
    return RunConfig(**{**base, **settings, "seed": seed})


def packed(configs: list[RunConfig], tmp_path, name: str) -> tuple[list, list[list[float]]]:
    losses = CopyLosses()
    results = run_packed(configs, [tmp_path / name / str(c.seed) for c in configs], callbacks=[losses])
    return results, losses.losses


def assert_same_run(packed_result: dict, separate: dict, tol: float) -> None:
    for key, value in separate.items():
        if key in (m.TRAIN_SECONDS, m.BEST_CHECKPOINT):
            continue
        if isinstance(value, (float, dict)):
            assert packed_result[key] == pytest.approx(value, abs=tol, rel=tol), key
        else:
            assert packed_result[key] == value, key


@pytest.mark.trains
@pytest.mark.parametrize("model, group, size, optimizer, schedule, relaxation, seeds", [
    ("p4cnn", "z2", 12, "adam", "none", "none", SEEDS),
    ("p4cnn", "p4", 12, "adamw", "step", "rpp", SEEDS),
    ("p4cnn", "p4m", 13, "sgd", "cosine", "relaxed", SEEDS),
    ("resnet44", "p4", 9, "adam", "onecycle", "none", SEEDS[:2]),  # small and two copies: float64 ResNet-44 is slow
])
@pytest.mark.slow
def test_packed_copies_are_their_separate_runs_in_float64(tmp_path, model, group, size, optimizer, schedule,
                                                          relaxation, seeds):
    settings = dict(model=model, group=group, input_size=size, optimizer=optimizer, schedule=schedule, step_size=1,
                    weight_decay=1e-3, relaxation=relaxation, precision="64-true")
    configs = [tiny(seed, **settings) for seed in seeds]
    results, losses = packed(configs, tmp_path, "pack")
    assert len(losses) == 6  # two epochs of three steps
    for k, config in enumerate(configs):
        recorder = CopyLosses()
        separate = run_one(config, tmp_path / f"run{k}", callbacks=[recorder], enable_progress_bar=False)
        assert [step[k] for step in losses] == pytest.approx([s[0] for s in recorder.losses], abs=1e-8, rel=1e-8)
        assert set(results[k]) == set(separate)
        assert_same_run(results[k], separate, tol=1e-8)
        written = json.loads((tmp_path / "pack" / str(config.seed) / "metrics.json").read_text())
        assert written[m.TEST_ACC_UPRIGHT] == results[k][m.TEST_ACC_UPRIGHT]
        assert (tmp_path / "pack" / str(config.seed) / results[k][m.BEST_CHECKPOINT]).is_file()
    assert len({r[m.EQ_ERROR] for r in results}) == len(seeds)  # the seeds made different nets
    # The pack's trainer checkpoints only through a caller's Checkpoint (none here): each copy has its run's files.
    files = {str(path.relative_to(tmp_path / "pack")) for path in (tmp_path / "pack").rglob("*") if path.is_file()}
    assert files == {f"{c.seed}/{name}" for c in configs
                       for name in ("config.yaml", "metrics.json", "checkpoints/best.ckpt")}
    exact = {"z2": None, "p4": size % 2 == 0 if model == "p4cnn" else size % 2 == 1, "p4m": size % 2 == 0}[group]
    assert {r[m.EXACT] for r in results} == {exact}


class PoisonCopy(pl.Callback):
    """Turn copy ``k``'s first weight to NaN before step 1; keep its parameters as they stand before step 2."""

    def __init__(self, k: int) -> None:
        self.k, self.before_death, self.at_end = k, None, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == 1:
            with torch.no_grad():
                next(pl_module.backbone.parameters())[self.k].fill_(float("nan"))
        if trainer.global_step == 2:
            self.before_death = self.parameters(pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        self.at_end = self.parameters(pl_module)

    def parameters(self, pl_module) -> dict[str, torch.Tensor]:
        state = pl_module.backbone.copy_state(self.k)  # its batch-norm statistics still follow its forwards
        return {name: state[name] for name in pl_module.backbone.param_names}


@pytest.mark.trains
@pytest.mark.slow
def test_a_diverging_copy_fails_alone_and_stays_frozen(tmp_path):
    configs = [tiny(seed, precision="64-true") for seed in SEEDS]
    poison = PoisonCopy(1)
    results = run_packed(configs, [tmp_path / str(s) for s in SEEDS], callbacks=[poison])
    assert isinstance(results[1], FloatingPointError) and "training loss is nan at step 2" in str(results[1])
    assert not (tmp_path / "1" / "metrics.json").exists()
    for name, tensor in poison.before_death.items():  # frozen from the step its loss was found non-finite
        torch.testing.assert_close(poison.at_end[name], tensor, rtol=0, atol=0, equal_nan=True, msg=name)
    alone = run_one(configs[2], tmp_path / "alone", enable_progress_bar=False)
    assert_same_run(results[2], alone, tol=1e-8)
    assert isinstance(results[0], dict)


@pytest.mark.parametrize("relaxation", ["none", "relaxed", "rpp", "partial"])
def test_packed_model_computes_each_copy_with_its_own_weights_and_statistics(relaxation):
    nets = []
    for seed in SEEDS:
        torch.manual_seed(seed)
        nets.append(build_model("p4cnn", group="p4", width=2, relaxation=relaxation).double())
    pack = PackedModel(nets).double()
    x = torch.randn(len(SEEDS), 4, 1, 28, 28, dtype=torch.float64)
    # A partial conv samples its training masks, like dropout: per copy, but not its unpacked run's draws.
    for mode in (True, False) if relaxation != "partial" else (False,):
        pack.train(mode)
        expected = torch.stack([net.train(mode)(x[k]) for k, net in enumerate(nets)])
        torch.testing.assert_close(pack(x), expected, rtol=1e-10, atol=1e-10)
    record, options = resolve_relaxation(relaxation)
    assert (record.penalty is None) == (relaxation == "none")
    if record.penalty is not None:
        penalties = [record.penalty(net, options) for net in nets]
        torch.testing.assert_close(pack.per_copy(lambda net: record.penalty(net, options)), torch.stack(penalties),
                                   rtol=1e-12, atol=1e-12)
    for k, net in enumerate(nets):  # batch-norm statistics moved per copy, and unpack gives the copy back
        copy_k = pack.unpack(k)
        torch.testing.assert_close(dict(copy_k.state_dict()), dict(net.state_dict()), rtol=1e-12, atol=1e-12)


def test_only_the_seeds_of_one_configuration_pack(tmp_path):
    with pytest.raises(ValueError, match="the copies of a pack may differ only in seed; seed 1 differs in lr"):
        run_packed([tiny(0), tiny(1, lr=1e-2)], [tmp_path / "0", tmp_path / "1"])
    with pytest.raises(ValueError, match="one output directory per configuration: 2 configurations, 1"):
        run_packed([tiny(0), tiny(1)], [tmp_path / "0"])
    assert not (tmp_path / "0").exists()
