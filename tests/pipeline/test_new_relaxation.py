"""A relaxation method is one module: this file defines and registers a method of its own (lifting and group convs
with a free additive term per output channel and group element, and a penalty on its spread over the group), then
builds, checks, trains, packs and sweeps it, with nothing in equisweep changed. And how settings name a method: by
its name (its defaults) or as one mapping, in a run config or a sweep grid; the old flat spellings are refused."""

import pytest
import torch
import typer
import yaml
from pydantic import Field
from torch import Tensor, nn

from equisweep.cli import app
from equisweep.errors import UserError
from equisweep.exactness import check_exactness, equivariance_error
from equisweep.groups import Group
from equisweep.models import build_model, register_relaxation
from equisweep.models.gconv import GroupConv, LiftingConv
from equisweep.models.relaxation import Relaxation, RelaxationOptions, RelaxedLayerSet, penalty_sum
from equisweep.pipeline import EquivarianceClassifier, load_run_config
from equisweep.pipeline import vocabulary as m
from equisweep.pipeline.sweep.driver import run_sweep
from equisweep.pipeline.sweep.results import read_results
from equisweep.pipeline.sweep.spec import load_sweep
from equisweep.pipeline.train.run import run_one

NAME = f"{__name__}:shifted"  # a method of another package is named by its module: trial processes import it


class ShiftMixin:
    """Adds ``shift[c, g]`` to output slot (c, g): exactly equivariant while the shift is constant over g."""

    relaxed_by_construction = True

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.shift = nn.Parameter(torch.zeros(self.out_channels, self.group.order))

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x) + self.shift[:, :, None, None]

    def spread(self) -> Tensor:
        return (self.shift - self.shift.mean(1, keepdim=True)).square().sum()

    def departure(self) -> float:
        shift = self.shift.detach()
        return float((shift.amax(1) - shift.amin(1)).max())


class ShiftedLiftingConv(ShiftMixin, LiftingConv):
    pass


class ShiftedGroupConv(ShiftMixin, GroupConv):
    pass


class ShiftOptions(RelaxationOptions):
    spread_wd: float = Field(0.5, ge=0)


def shifted_layers(group: Group, options: ShiftOptions, subsampling: str) -> RelaxedLayerSet:
    return RelaxedLayerSet(group, ShiftedLiftingConv, ShiftedGroupConv, subsampling)


def spread_penalty(model: nn.Module, options: ShiftOptions) -> Tensor:
    return options.spread_wd * penalty_sum(model, (m.spread() for m in model.modules() if isinstance(m, ShiftMixin)))


register_relaxation(Relaxation(NAME, ShiftOptions, shifted_layers, spread_penalty))


def test_a_method_registered_outside_the_package_builds_and_the_static_check_knows_it():
    net = build_model("p4cnn", "p4", width=2, relaxation={"method": NAME, "spread_wd": 2.0}).double()
    assert isinstance(net.block1[0], ShiftedLiftingConv) and isinstance(net.block2[0], ShiftedGroupConv)
    report = check_exactness(net, 28, nearest=False)
    assert report.exact and report.relaxed and "7 relaxed layers; all tied now" in report.notes[-1]
    with torch.no_grad():
        net.block3[0].shift.add_(torch.randn_like(net.block3[0].shift))
    x = torch.randn(2, 1, 28, 28, dtype=torch.float64)
    assert equivariance_error(net, x)["output"]["max"] > 1e-3
    assert "untied now: block3.0" in check_exactness(net, 28, nearest=False).notes[-1]
    with pytest.raises(UserError, match=f"^relaxation: '{NAME}' needs a p4 or p4m group with the native backend"):
        build_model("p4cnn", "z2", relaxation=NAME)
    with pytest.raises(UserError, match=f"^relaxation.spread: {NAME} takes no option 'spread'; its options: spread_wd"):
        build_model("p4cnn", relaxation={"method": NAME, "spread": 1.0})


def test_a_setting_names_a_method_or_gives_its_mapping_in_a_run_and_in_a_sweep_grid(tmp_path):
    rpp = {"method": "rpp", "free_wd": 1.0, "equiv_wd": 1e-5}
    assert load_run_config({"relaxation": "rpp"}).model.relaxation == rpp
    assert load_run_config({"model": {"relaxation": {"method": "partial", "lambda": 0.1}}}).model.relaxation == {
        "method": "partial", "lambda": 0.1, "keep_init": 0.8, "temperature_start": 0.5, "temperature_end": 1e-4,
        "lr_probs": 0.02}
    spec = tmp_path / "grid.yaml"
    spec.write_text(yaml.safe_dump({"name": "grid", "dataset": "mnist69", "width": 2, "grid": {
        "relaxation": ["none", "rpp", {"method": "rpp", "free_wd": 1e-4}, {"method": NAME}]}}))
    assert [cell.config.model.relaxation for cell in load_sweep(spec).cells] == [
        {"method": "none"}, rpp, {**rpp, "free_wd": 1e-4}, {"method": NAME, "spread_wd": 0.5}]


@pytest.mark.parametrize(("settings", "message"), [
    ({"rpp_free_wd": 1e-4}, "rpp_free_wd: unknown key; did you mean relaxation: {method: rpp, free_wd: 0.0001}?"),
    ({"model": {"relax_banks": 3}}, "relax_banks: unknown key; did you mean relaxation: {method: relaxed, banks: 3}?"),
    ({"partial_lambda": 0.1}, "partial_lambda: unknown key; did you mean relaxation: {method: partial, lambda: 0.1}?"),
    ({"relaxation": {"method": "rpp", "free_wd": -1}},
     "relaxation.free_wd: must be greater than or equal to 0, got -1"),
])
def test_the_old_flat_spellings_and_bad_options_are_refused_in_one_line(settings, message):
    with pytest.raises(UserError) as caught:
        load_run_config(settings)
    assert str(caught.value) == message


def test_the_relaxation_flag_reads_a_name_or_a_yaml_mapping_and_refuses_broken_yaml_in_one_line():
    train = typer.main.get_command(app).commands["train"]

    def flag(text: str):
        return train.make_context("train", ["--relaxation", text]).params["relaxation"]

    assert flag("rpp") == "rpp"
    assert flag("{method: rpp, free_wd: 0.5}") == {"method": "rpp", "free_wd": 0.5}
    with pytest.raises(UserError, match="^relaxation: '{method: rpp' is neither a name nor a YAML mapping"):
        flag("{method: rpp")


def test_a_sweep_refuses_the_old_flat_spellings_with_the_mapping_to_write(tmp_path):
    for spelling in ({"relax_alpha": 0.1}, {"grid": {"rpp_equiv_wd": [0.0, 1.0]}}):
        spec = tmp_path / "old.yaml"
        spec.write_text(yaml.safe_dump({"name": "old", **spelling}))
        with pytest.raises(UserError, match="did you mean relaxation: {method: r"):
            load_sweep(spec)


# One epoch of three 200-image steps on mnist69 in float64, so a packed copy equals its own run to rounding.
TINY = {"dataset": "mnist69", "width": 2, "epochs": 1, "batch_size": 200, "eval_batch_size": 200, "lr": 3e-2,
        "angles": [0, 45], "eq_error_samples": 4, "bn_calibration_batches": 1, "num_workers": 0, "accelerator": "cpu",
        "precision": "64-true", "wandb": {"mode": "disabled"}, "relaxation": {"method": NAME, "spread_wd": 0.1}}


@pytest.mark.slow
def test_a_method_registered_outside_the_package_trains_reloads_and_sweeps_packed(tmp_path, ray_local):
    alone = run_one(load_run_config({**TINY, "seed": 0}), tmp_path / "run", enable_progress_bar=False)
    assert len(alone[m.RELAXATION_BY_LAYER]) == 7 and min(alone[m.RELAXATION_BY_LAYER].values()) > 0  # it trained
    restored = EquivarianceClassifier.load_from_checkpoint(tmp_path / "run" / alone[m.BEST_CHECKPOINT])
    assert restored.hparams.relaxation == {"method": NAME, "spread_wd": 0.1}
    assert isinstance(restored.backbone.block1[0], ShiftedLiftingConv)

    spec = tmp_path / "toy.yaml"  # two seeds: one trial trains them as one packed model, in a Ray worker
    spec.write_text(yaml.safe_dump({"name": "toy", **TINY, "grid": {"seed": [0, 1]}, "resources": {"cpu": 1},
                                    "storage": str(tmp_path / "store")}))
    outcome = run_sweep(load_sweep(spec), verbose=0)
    assert outcome.counts == {"finished": 2}
    table = read_results(outcome.path).sort_values("seed")
    assert list(table["relaxation"]) == [NAME, NAME] and list(table["relaxation_spread_wd"]) == [0.1, 0.1]
    copy = table.iloc[0]  # seed 0's packed copy is seed 0's own run
    for key in (m.VAL_ACC, m.TEST_ACC_UPRIGHT, m.EQ_ERROR):
        assert copy[key] == pytest.approx(alone[key], rel=1e-8, abs=1e-8), key
    for layer, value in alone[m.RELAXATION_BY_LAYER].items():
        assert copy[f"{m.RELAXATION_PREFIX}{layer}"] == pytest.approx(value, rel=1e-8, abs=1e-10), layer
