"""Relaxed and same-size arms through the sweep: the joint grid axis, the presets, and one real sweep on the
embedded Ray whose report names each arm against its reference."""

from pathlib import Path

import pandas as pd
import pytest
import yaml

from equisweep.datamodules import asymmetry
from equisweep.errors import UserError
from equisweep.pipeline.report.report import build_report
from equisweep.pipeline.sweep.asymmetry_table import read_asymmetry
from equisweep.pipeline.sweep.driver import run_sweep
from equisweep.pipeline.sweep.results import read_results
from equisweep.pipeline.sweep.spec import load_sweep
from equisweep.pipeline.sweep.status import status_text

SWEEPS = Path(__file__).resolve().parents[3] / "sweeps"
# One epoch on mnist69's 600 training digits: a few seconds of training per trial.
FAST = {"dataset": "mnist69", "model": "p4cnn", "group": "p4", "epochs": 1, "batch_size": 8, "lr": 3e-3,
        "dropout": 0.0, "schedule": "none", "angles": [0, 90, 45], "eq_error_samples": 8, "bn_calibration_batches": 2,
        "resources": {"cpu": 1}, "wandb": {"mode": "disabled"}}


def _spec(tmp_path: Path, name: str, **settings) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, **FAST, "storage": str(tmp_path / "store"), **settings},
                                   sort_keys=False))
    return path


def test_a_joint_grid_axis_sets_several_settings_together(tmp_path):
    sweep = load_sweep(_spec(tmp_path, "joint", grid={
        "data": [{"dataset": "mnist5k", "train_symmetry": "c4"}, {"dataset": "mnist69"}], "seed": [0, 1]}))
    assert [(c.config.data.dataset, c.config.data.train_symmetry, c.config.seed) for c in sweep.cells] == [
        ("mnist5k", "c4", 0), ("mnist5k", "c4", 1), ("mnist69", "none", 0), ("mnist69", "none", 1)]
    assert sweep.cells[0].overrides == {"dataset": "mnist5k", "train_symmetry": "c4", "seed": 0}
    assert sweep.varying_keys == ["dataset", "train_symmetry", "seed"]
    assert sweep.trial_table().splitlines()[0].split() == ["0", "dataset=mnist5k", "train_symmetry=c4", "seeds=0,1",
                                                           "exact=yes", "cpu=1", "gpu=0"]


@pytest.mark.parametrize(("grid", "message"), [
    ({"data": [{"dataset": "mnist5k"}], "dataset": ["mnist69"]}, "'dataset' is set by the axes 'data' and 'dataset'"),
    ({"data": [{"colour": "red"}]}, "'colour' is not a run setting"),
    ({"data": [{}]}, "joint axis 'data': its mappings set nothing"),
    ({"data": [{"wandb": {}}]}, "'wandb' cannot vary across trials"),
    ({"data": ["mnist5k"]}, "'data' is not a run setting; use one of: "),
    ({"data": [{"dataset": "mnist5k"}, "mnist69"]}, "(or, as a joint grid axis, give a list of mappings of settings)"),
])
def test_a_bad_joint_axis_is_refused_in_one_line(tmp_path, grid, message):
    with pytest.raises(UserError, match=None) as caught:
        load_sweep(_spec(tmp_path, "bad", grid=grid))
    assert message in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.slow  # traces every cell's network
def test_the_relaxed_presets_cross_their_arms_with_their_kinds_of_data():
    arms = {("p4", 28, "none", True), ("p4", 29, "none", False), ("p4", 28, "relaxed", True),
            ("p4", 28, "rpp", True), ("p4", 28, "partial", True), ("z2", 28, "none", None)}
    data = {("mnist5k", "none"), ("mnist5k", "gaussian(45,20)"), ("mnist5k", "c4"), ("mnist6-180", "none"),
            ("mnist69", "none")}
    mirror = ({("p4m", 28, "none", True)}, {("mnist6-m", "none")})  # a 6 against its mirror: p4 against p4m
    for name, seeds, (more_arms, more_data) in (("relaxed_mnist", 5, mirror), ("relaxed_mnist_paper", 30, ((), ()))):
        sweep = load_sweep(SWEEPS / f"{name}.yaml")
        cells = [(c.config.model.group, c.config.data.input_size, c.config.model.relaxation["method"],
                  c.config.data.dataset, c.config.data.train_symmetry, c.exact) for c in sweep.cells]
        size = len(arms | set(more_arms)) * len(data | set(more_data))
        assert sweep.num_trials == size * seeds and len(set(cells)) == size
        assert {cell[:3] + cell[5:] for cell in cells} == arms | set(more_arms)
        assert {cell[3:5] for cell in cells} == data | set(more_data)
        assert "relaxation=rpp" in sweep.trial_table()


@pytest.mark.slow  # traces every cell's network
def test_the_families_preset_crosses_every_family_with_its_kinds_of_data_in_packs_of_five_seeds():
    sweep = load_sweep(SWEEPS / "families_mnist.yaml")
    arms = {(c.config.model.group, c.config.data.input_size, c.config.model.subsampling,
             c.config.model.invariance["method"], c.config.optim.eq_penalty, c.config.model.relaxation["method"],
             c.exact) for c in sweep.cells}
    assert arms == {("p4", 28, "stride", "none", 0.0, "none", True), ("p4", 29, "stride", "none", 0.0, "none", False),
                    ("p4", 29, "adaptive", "none", 0.0, "none", True),
                    ("z2", 29, "stride", "average", 0.0, "none", True),
                    ("p4", 29, "stride", "average", 0.0, "none", True),
                    ("z2", 28, "stride", "canonicalize", 0.0, "none", True),
                    ("z2", 28, "stride", "augerino", 0.0, "none", None),
                    ("z2", 28, "stride", "none", 0.1, "none", None), ("z2", 28, "stride", "none", 1.0, "none", None),
                    *(("p4", 28, "stride", "none", 0.0, relaxation, True) for relaxation in ("relaxed", "rpp",
                                                                                             "partial")),
                    ("z2", 28, "stride", "none", 0.0, "none", None)}
    assert {(c.config.data.dataset, c.config.data.train_symmetry) for c in sweep.cells} == {
        ("mnist5k", "none"), ("mnist5k", "gaussian(45,20)"), ("mnist5k", "c4"), ("mnist6-180", "none"),
        ("mnist69", "none"), ("mnist6-m", "none")}
    assert sweep.num_trials == 13 * 6 * 5 and [len(pack.seeds) for pack in sweep.packs] == [5] * 13 * 6
    assert sweep.spec.asymmetry


@pytest.mark.slow  # traces every cell's network
@pytest.mark.parametrize(("name", "sizes"), [("quick", (28, 29)), ("paper_rotmnist", (28, 29)),
                                             ("paper_cifar", (33, 32)), ("paper_flowers", (225, 224)),
                                             ("pcam", (97, 96))])
def test_the_presets_hold_an_adaptive_exact_arm_at_the_approximate_size(name, sizes):
    exact_size, native = sizes
    sweep = load_sweep(SWEEPS / f"{name}.yaml")
    flags = {(c.config.model.group, c.config.data.input_size, c.config.model.subsampling): c.exact
             for c in sweep.cells if c.config.model.group != "z2"}
    assert flags[("p4", native, "adaptive")] is True and flags[("p4", native, "stride")] is False
    assert flags[("p4", exact_size, "stride")] is True
    assert "subsampling=adaptive" in sweep.trial_table()


@pytest.mark.slow
def test_relaxed_family_and_same_size_arms_sweep_and_the_report_names_each_reference(tmp_path, ray_local,
                                                                                       monkeypatch):
    # relaxation, subsampling and the families in the grid: the approximate 29 has a same-size reference (adaptive
    # exact 29); the rpp 28 has none at 28, so it falls back to the nearest exact size; every family arm on a plain
    # CNN of width 2 is compared too, the penalised one with two seeds packed in one trial
    families = [{"input_size": 29, "group": "z2", "invariance": "average"},
                {"input_size": 28, "group": "z2", "invariance": "canonicalize"},
                {"input_size": 28, "group": "z2", "invariance": "augerino"},
                *({"input_size": 28, "group": "z2", "eq_penalty": 0.1, "seed": seed} for seed in (0, 1))]
    sweep = load_sweep(_spec(tmp_path, "arms", asymmetry=True, width=2, grid={"arm": [
        {"input_size": 28, "relaxation": "rpp"}, {"input_size": 29, "subsampling": "adaptive"}, {"input_size": 29},
        *families]}))
    assert [len(pack.seeds) for pack in sweep.packs] == [1, 1, 1, 1, 1, 1, 2]
    monkeypatch.setattr(asymmetry, "STEPS", 5)  # the data's asymmetry, measured briefly: one condition
    outcome = run_sweep(sweep, verbose=0)
    assert outcome.counts == {"finished": 8}
    measured = read_asymmetry(outcome.path)
    assert measured[["dataset", "train_symmetry", "group", "steps"]].values.tolist() == [["mnist69", "none", "p4", 5]]
    table = read_results(outcome.path)
    assert list(zip(table["input_size"], table["relaxation"], table["subsampling"], table["invariance"],
                    table["eq_penalty"], table["exact"])) == [
        (28, "rpp", "stride", "none", 0.0, True), (29, "none", "adaptive", "none", 0.0, True),
        (29, "none", "stride", "none", 0.0, False), (29, "none", "stride", "average", 0.0, True),
        (28, "none", "stride", "canonicalize", 0.0, True), (28, "none", "stride", "augerino", 0.0, None),
        (28, "none", "stride", "none", 0.1, None), (28, "none", "stride", "none", 0.1, None)]
    by_method = table.set_index(["invariance", "eq_penalty", "subsampling", "seed"])
    # exact at 29 after training, by adaptive sampling and by averaging; exact by canonicalisation at 28
    assert (by_method.loc[[("none", 0.0, "adaptive", 0), ("average", 0.0, "stride", 0),
                           ("canonicalize", 0.0, "stride", 0)], "eq_error"] < 1e-4).all()
    family = [column for column in table.columns if column.startswith("family/")]
    assert {column: by_method[column].dropna().index.get_level_values(0).tolist() for column in family} == {
        "family/chosen_r0": ["canonicalize"], "family/chosen_r90": ["canonicalize"],
        "family/chosen_r180": ["canonicalize"], "family/chosen_r270": ["canonicalize"],
        "family/range_deg": ["augerino"], "family/orbit_change": ["none", "none"]}
    assert table["eq_penalty_kind"].eq("orbit").all()

    report = build_report(str(outcome.path))
    verdict = pd.read_csv(report.out_dir / "verdict.csv", keep_default_na=False)
    arms = verdict.drop_duplicates("arm").set_index("arm")
    assert list(arms.index) == ["p4 29 approx", "p4 28 rpp", "plain CNN 28 augerino", "plain CNN 29 average",
                                "plain CNN 28 canonicalize", "plain CNN 28 eq_penalty=0.1"]
    assert arms[["exact_arm", "reference", "method"]].values.tolist() == [
        ["p4 29 adaptive exact", "same size", "approx"], ["p4 29 adaptive exact", "nearest exact size", "rpp"],
        ["p4 29 adaptive exact", "nearest exact size", "augerino"], ["p4 29 adaptive exact", "same size", "average"],
        ["p4 29 adaptive exact", "nearest exact size", "canonicalize"],
        ["p4 29 adaptive exact", "nearest exact size", "eq_penalty"]]
    assert arms.loc["plain CNN 28 eq_penalty=0.1", "arm_n"] == 2  # both packed seeds
    assert set(verdict["verdict"]) == {"inconclusive"}  # one seed in the reference: means only
    text = (report.out_dir / "report.md").read_text()
    assert ("Over all trials: p4 29 approx is not tested (means only) and plain CNN 29 average is not tested (means "
            "only) against p4 29 adaptive exact (same size); p4 28 rpp is not tested (means only), plain CNN 28 "
            "augerino is not tested (means only), plain CNN 28 canonicalize is not tested (means only) and plain "
            "CNN 28 eq_penalty=0.1 is not tested (means only) against p4 29 adaptive exact (nearest exact "
            "size).") in text
    assert "| p4 28 rpp | " in text and "| p4 29 adaptive exact (same size) | " in text
    assert "## Which arm wins" in text and "| all trials | upright | no arm beats the exact reference | " in text
    for figure in ("relaxation_gain", "gain_by_asymmetry", "gap_map"):
        assert (report.out_dir / "figures" / f"{figure}.png").is_file()
    svg = (report.out_dir / "figures" / "gain_by_asymmetry.svg").read_text()
    assert all(arm in svg for arm in arms.index)  # the family arms are points of the figure, named in its legend
    assert "## What breaking symmetry bought" in text
    # what each family learned: its diagnostics over its seeds; group averaging reports none
    learned = text.split("## What the families learned")[1].split("\n## ")[0]
    change = table.loc[table["eq_penalty"] > 0, "family/orbit_change"]
    assert f"| plain CNN 28 augerino | 1 | {table['family/range_deg'].max():.3g} | – | – |" in learned
    assert (f"| plain CNN 28 eq_penalty=0.1 | 2 | – | {change.mean():.3g} [{change.min():.3g}–{change.max():.3g}] | "
            "– |") in learned
    assert "| plain CNN 28 canonicalize | 1 | – | – | r0 " in learned and "| plain CNN 29 average" not in learned
    assert "<h2>What the families learned</h2>" in (report.out_dir / "report.html").read_text()
    status = status_text(str(outcome.path))
    assert all(f"\n{arm} " in status for arm in ("p4 28 rpp", "p4 29 adaptive exact", "p4 29 approx", *arms.index))
