"""Run settings: every common mistake is one plain ``field: message`` line naming the fix, YAML errors say where."""


import pytest

from equisweep.errors import UserError
from equisweep.pipeline.sweep.spec import load_sweep
from equisweep.pipeline.train.config import FLAT_PATHS, GROUPS, RunConfig, load_run_config
from tests.helpers import run_python

# What pydantic says on its own; none of it may reach the user.
LIBRARY_WORDING = ("Input should be", "Extra inputs are not permitted", "pydantic", "errors.pydantic.dev",
                   "Value error", "validation error")


@pytest.mark.parametrize(("values", "message"), [
    ({"epocs": 3}, "epocs: unknown key; did you mean 'epochs'?"),
    ({"batchsize": 8}, "batchsize: unknown key; did you mean 'batch_size' or 'eval_batch_size'?"),
    ({"wandb": {"projet": "x"}}, "wandb.projet: unknown key; did you mean 'project'?"),
    ({"colour": "red"}, "colour: unknown key; remove it, or use one of: dataset, data_dir, "),
    ({"epochs": "many"}, "epochs: must be a whole number, got 'many'"),
    ({"width": 1.5}, "width: must be a whole number, got 1.5"),
    ({"lr": "fast"}, "lr: must be a number, got 'fast'"),
    ({"download": "maybe"}, "download: must be true or false, got 'maybe'"),
    ({"angles": 45}, "angles: must be a list, got 45"),
    ({"wandb": "online"}, "wandb: must be a mapping (key: value), got 'online'"),
    ({"epochs": 0}, "epochs: must be at least 1, got 0"),
    ({"lr": -0.1}, "lr: must be above 0"),
    ({"dropout": 1.0}, "dropout: must be below 1"),
    ({"optimizer": "rmsprop"}, "optimizer: must be 'adam', 'adamw' or 'sgd', got 'rmsprop'"),
    ({"wandb": {"mode": "loud"}}, "wandb.mode: must be 'auto', 'online', 'offline' or 'disabled', got 'loud'"),
    ({"optim": {"epocs": 3}}, "epocs: unknown key; did you mean 'epochs'?"),
    ({"optim": {"lr": 0}}, "lr: must be above 0"),
    ({"lr": 0.1, "optim": {"lr": 0.2}}, "lr: given both as lr and inside optim; set it once"),
    ({"data": "mnist5k"}, "data: must be a mapping (key: value), got 'mnist5k'"),
])
def test_common_mistakes_are_one_plain_line(values, message):
    with pytest.raises(UserError) as info:
        load_run_config(values)
    text = str(info.value)
    assert text.startswith(message) and "\n" not in text
    assert not any(words in text for words in LIBRARY_WORDING), text


def test_a_yaml_error_in_a_run_config_names_line_and_column(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("epochs: 2\nlr: [0.1\nseed: 3\n")  # the list on line 2 is never closed
    with pytest.raises(UserError) as info:
        load_run_config({}, config)
    assert str(info.value).startswith(f"config: {config} is not valid YAML at line 3, column 5: ")
    assert "\n" not in str(info.value)


def test_a_yaml_error_in_a_sweep_spec_names_line_and_column(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: t\ngrid:\n  seed: [0, 1]\n   group: [p4]\n")  # line 4 is indented under nothing
    with pytest.raises(UserError, match=rf"^spec: {spec} is not valid YAML at line 4, column 4: "):
        load_sweep(spec)


@pytest.mark.parametrize("text", ["- epochs: 2\n", "just words\n"])
def test_a_file_that_is_not_a_mapping_is_refused(tmp_path, text):
    config = tmp_path / "run.yaml"
    config.write_text(text)
    with pytest.raises(UserError, match=rf"^config: {config} must hold a mapping of settings"):
        load_run_config({}, config)


def test_an_empty_file_means_all_defaults(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("")
    assert load_run_config({"epochs": 2}, config).optim.epochs == 2


def test_validating_run_settings_never_imports_lightning():
    """So that ``equisweep train`` refuses a bad setting in the time it takes to import torch."""
    result = run_python("""
import sys
from equisweep.pipeline import load_run_config
load_run_config({'dataset': 'mnist69', 'train_symmetry': 'gaussian(45,20)', 'relaxation': 'rpp'})
heavy = [m for m in sys.modules if m.split('.')[0] in ('pytorch_lightning', 'lightning', 'ray', 'wandb')]
assert not heavy, heavy
""")
    assert result.returncode == 0, result.stderr[-2000:]


def test_every_setting_has_one_flat_name_and_the_flat_view_round_trips():
    leaves = [name for group in GROUPS.values() for name in group.model_fields]
    outside = [name for name in RunConfig.model_fields if name not in GROUPS]
    assert sorted(FLAT_PATHS) == sorted(leaves + outside) and len(leaves + outside) == 39
    config = load_run_config({"model": "resnet18", "lr": 0.1, "angles": [0, 90], "wandb": {"mode": "disabled"},
                              "data": {"input_size": 33}, "seed": 4})
    assert (config.model.model, config.optim.lr, config.evaluation.angles, config.data.input_size) == (
        "resnet18", 0.1, [0, 90], 33)
    assert list(config.flat()) == list(FLAT_PATHS) and config.flat()["input_size"] == 33
    assert RunConfig.from_flat(config.flat()) == config == RunConfig.model_validate(config.model_dump())


def test_flags_override_a_grouped_config_file_setting_by_setting(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("optim: {lr: 0.5, epochs: 3}\nmodel: {model: resnet18}\nwandb: {project: p}\n")
    loaded = load_run_config({"lr": 0.25, "wandb": {"mode": "disabled"}, "epochs": None}, config)
    assert (loaded.optim.lr, loaded.optim.epochs, loaded.model.model) == (0.25, 3, "resnet18")
    assert (loaded.wandb.project, loaded.wandb.mode) == ("p", "disabled")
