"""Sweep specs: validation in one line per mistake, expansion into cells, the static exact flag."""

from pathlib import Path

import pytest
import yaml

from equisweep.errors import UserError
from equisweep.pipeline.sweep.spec import SweepSpec, load_sweep
from equisweep.pipeline.train.config import RunConfig, nest

REPO = Path(__file__).resolve().parents[3]


def _load(tmp_path: Path, **spec):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({"name": "t", **spec}, sort_keys=False))
    return load_sweep(path)


def test_variants_times_grid_with_ranges(tmp_path):
    sweep = _load(tmp_path, variants=[{"group": "p4", "input_size": 27}, {"group": "z2", "input_size": 28}],
                  grid={"train_symmetry": ["none", "gaussian(45, 20)"], "seed": {"range": [3, 6]}})
    assert sweep.num_trials == len(sweep.cells) == 2 * 2 * 3
    first = sweep.cells[0]
    assert first.overrides == {"group": "p4", "input_size": 27, "train_symmetry": "none", "seed": 3}
    assert (first.config.model.group, first.config.data.input_size, first.exact) == ("p4", 27, False)
    assert {cell.config.seed for cell in sweep.cells} == {3, 4, 5}
    assert sweep.cells[3].config.data.train_symmetry == "gaussian(45,20)"  # normalised by the regime parser
    assert all(cell.config.wandb.group == "t" for cell in sweep.cells)  # W&B group defaults to the sweep name
    assert sweep.varying_keys == ["group", "input_size", "train_symmetry", "seed"]
    assert {cell.exact for cell in sweep.cells[6:]} == {None}  # z2: exact and approximate do not apply
    # Packed by default: a trial per cell but the seed, its three seeds in one pack; the count stays seed-runs.
    assert [pack.seeds for pack in sweep.packs] == [[3, 4, 5]] * 4
    assert [cell.index for cell in sweep.packs[1].cells] == [3, 4, 5]
    lines = sweep.trial_table().splitlines()
    assert lines[2].split()[1:] == ["group=z2", "input_size=28", "train_symmetry=none", "seeds=3-5", "exact=-",
                                    "cpu=1", "gpu=0"]
    assert lines[-2:] == ["4 packed trials of up to 16 seeds (pack), resources each", "12 trials"]
    unpacked = _load(tmp_path, pack=1, grid={"seed": {"range": [3, 6]}})
    assert [pack.seeds for pack in unpacked.packs] == [[3], [4], [5]]
    assert [pack.seeds for pack in _load(tmp_path, pack=2, grid={"seed": [1, 2, 3]}).packs] == [[1, 2], [3]]


def test_search_multiplies_trials_and_the_table_lists_each(tmp_path):
    sweep = _load(tmp_path, grid={"input_size": [28, 29]},
                  search={"num_samples": 3, "space": {"lr": {"loguniform": [1e-4, 1e-2]},
                                                      "batch_size": {"choice": [8, 16]}}})
    assert sweep.num_trials == 6
    lines = sweep.trial_table().splitlines()
    assert lines[-1] == "6 trials" and len(lines) == 6 + 2
    assert lines[0].split() == ["0", "input_size=28", "seeds=0", "exact=yes", "cpu=1", "gpu=0", "search",
                                "lr~loguniform[0.0001,", "0.01]", "batch_size~choice[8,", "16]"]
    assert lines[5].split()[:4] == ["5", "input_size=29", "seeds=0", "exact=no"]


def test_paper_preset_marks_exact_and_approximate_arms():
    sweep = load_sweep(REPO / "sweeps" / "paper_rotmnist.yaml")
    assert sweep.num_trials == 2000
    exact = {(c.config.model.group, c.config.data.input_size, c.config.model.subsampling): c.exact for c in sweep.cells}
    assert exact == {("p4", 27, "stride"): False, ("p4", 28, "stride"): True, ("p4", 29, "stride"): False,
                     ("p4", 29, "adaptive"): True, ("z2", 28, "stride"): None}  # z2: not applicable


def test_cli_overrides_merge_into_the_spec(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "wandb": {"project": "p"}}))
    sweep = load_sweep(path, {"storage": "s3://bucket/x", "wandb": {"mode": "disabled"}})
    assert sweep.spec.storage == "s3://bucket/x"
    assert (sweep.spec.base.wandb.project, sweep.spec.base.wandb.mode) == ("p", "disabled")


@pytest.mark.parametrize(("spec", "message"), [
    ({"epochs": 2, "lrr": 0.1}, "lrr: unknown key; did you mean 'lr'?"),
    ({"gird": {"seed": [0, 1]}}, "gird: unknown key; did you mean 'grid'?"),
    ({"search": {"num_samples": 2, "spcae": {}}}, "search.spcae: unknown key; did you mean 'space'?"),
    ({"epochs": "many"}, "epochs: must be a whole number, got 'many'"),
    ({"pack": 0}, "pack: must be at least 1, got 0"),
    ({"grid": {}}, "grid: the grid is empty"),
    ({"grid": {"seed": []}}, "axis 'seed' has no values"),
    ({"grid": {"group": ["p5"]}}, "group: unknown group"),
    ({"grid": {"colour": ["red"]}}, "'colour' is not a run setting"),
    ({"grid": {"wandb": [{}]}}, "'wandb' cannot vary across trials"),
    ({"model": "resnet45"}, "model: unknown model 'resnet45'"),
    ({"dataset": "imagenet"}, "dataset: unknown dataset 'imagenet'"),
    ({"train_symmetry": "spin"}, "train_symmetry"),
    ({"grid": {"input_size": [28, 3]}}, "input_size: 3 is too small for p4cnn"),
    ({"group": "z2", "grid": {"input_size": [28, 3]}}, "input_size: 3 is too small for p4cnn"),  # traced all the same
    ({"resources": {"cpu": -0.5}}, "resources.cpu: must be above 0"),
    ({"resources": {"gpu": 2}}, "resources.gpu: must be at most 1"),
    ({"search": {"num_samples": 2, "space": {}}}, "search.space"),
    ({"search": {"num_samples": 2, "space": {"lr": {"loguniform": [0, 1]}}}}, "bounds must be positive"),
    ({"search": {"num_samples": 2, "space": {"lr": {"loguniform": [1e-4, 1e-2]}}, "start": [{"seed": 1}]}},
     "start: each point gives a value for every key of space (lr)"),
    ({"grid": {"seed": {"range": [5, 5]}}}, "range [5, 5] is empty"),
    ({"grid": {"seed": 3}}, "give a list of values"),
    ({"name": "my sweep"}, "name: use letters"),
])
def test_bad_specs_fail_in_one_line_naming_the_field(tmp_path, spec, message):
    with pytest.raises(UserError) as err:
        _load(tmp_path, **spec)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_a_cell_names_itself_when_only_the_combination_is_wrong(tmp_path):
    with pytest.raises(UserError, match=r"group: 'c8' needs backend: e2cnn .*\(in the cell group=c8\)$"):
        _load(tmp_path, grid={"group": ["p4", "c8"]})



@pytest.mark.parametrize("preset", sorted((REPO / "sweeps").glob("*.yaml")), ids=lambda path: path.stem)
def test_every_preset_validates_and_its_settings_may_move_under_base_in_groups(preset):
    data = yaml.safe_load(preset.read_text())
    spec = SweepSpec.model_validate(data)
    settings = {key: data.pop(key) for key in list(data) if key in RunConfig.accepted_keys()}
    grouped = SweepSpec.model_validate({**data, "base": nest(settings)})
    assert grouped.base == spec.base != RunConfig()  # the same run settings, none of them lost


def test_a_spec_takes_base_and_groups_and_the_top_level_wins(tmp_path):
    sweep = _load(tmp_path, base={"optim": {"lr": 0.1, "epochs": 3}, "group": "p4m"}, data={"input_size": 29},
                  lr=0.2, grid={"seed": [0, 1]})
    config = sweep.cells[1].config
    assert (config.optim.lr, config.optim.epochs, config.model.group, config.data.input_size, config.seed) == (
        0.2, 3, "p4m", 29, 1)
    with pytest.raises(UserError, match=r"^epocs: unknown key; did you mean 'epochs'\?$"):
        _load(tmp_path, base={"optim": {"epocs": 3}})
