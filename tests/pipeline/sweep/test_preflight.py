"""The dry run's pre-flight check: where and how a sweep would run, and one warning per problem, before any trial."""

from pathlib import Path

import pytest
import torch
import yaml
from ray import tune
from typer.testing import CliRunner

from equisweep.cli import app
from equisweep.pipeline.sweep.preflight import preflight
from equisweep.pipeline.sweep.spec import load_sweep

MNIST_FILES = ("MNIST/raw/train-images-idx3-ubyte", "MNIST/raw/train-labels-idx1-ubyte",
               "MNIST/raw/t10k-images-idx3-ubyte", "MNIST/raw/t10k-labels-idx1-ubyte")


def _spec(tmp_path: Path, **settings) -> Path:
    path = tmp_path / "spec.yaml"
    spec = {"name": "pre", "dataset": "mnist5k", "epochs": 3, "storage": str(tmp_path / "store"), **settings}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _warnings(tmp_path: Path, resume: bool = False, **settings) -> tuple[str, ...]:
    return preflight(load_sweep(_spec(tmp_path, **settings)), resume).warnings


def test_the_header_says_where_and_how_it_runs(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    sweep = load_sweep(_spec(tmp_path, resources={"cpu": 1}, max_concurrent=3))
    check = preflight(sweep, num_cpus=2)
    assert check.warnings == ()
    assert check.header == (
        f"storage: {tmp_path / 'store' / 'pre'} (new)",
        "wandb: offline (auto: no WANDB_API_KEY, no wandb login), project equisweep, group pre",
        "resources: 1 CPU, 0 GPU per trial",
        "concurrency: at most 3 trials at once (max_concurrent); 2 fit on this machine",
    )
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)  # auto resolves to online; nothing is contacted
    assert preflight(sweep).header[1].startswith("wandb: online (auto: WANDB_API_KEY set)")
    monkeypatch.setenv("WANDB_MODE", "offline")  # the user's explicit choice wins over the key
    assert preflight(sweep).header[1].startswith("wandb: offline (auto: WANDB_MODE=offline)")


def test_warns_when_a_sweep_of_that_name_exists(tmp_path):
    assert _warnings(tmp_path) == () and _warnings(tmp_path, resume=True) == ()
    # What a started sweep leaves at its storage: Tune's own experiment state (written here without starting Ray).
    tune.Tuner(lambda config: None, run_config=tune.RunConfig(name="pre", storage_path=str(tmp_path / "store")))
    (warning,) = _warnings(tmp_path)
    assert warning.startswith("name: a sweep called 'pre' already exists at") and "pass --resume" in warning
    sweep = load_sweep(_spec(tmp_path))
    resumed = preflight(sweep, resume=True)
    assert resumed.warnings == () and resumed.header[0].endswith("(exists, --resume continues it)")


def test_warns_when_gpus_are_requested_and_none_is_visible(tmp_path):
    warnings = _warnings(tmp_path, resources={"cpu": 1, "gpu": 0.5})
    expected = [] if torch.cuda.is_available() else [
        "resources.gpu: 0.5 GPU per trial is requested but no GPU is visible here; trials wait for a GPU node, so "
        "set resources.gpu: 0 to run on this machine"]
    assert list(warnings) == expected
    assert _warnings(tmp_path, resources={"cpu": 1, "gpu": 0}) == ()


def test_warns_when_a_dataset_is_missing_from_data_dir(tmp_path):
    data = tmp_path / "data"
    (warning,) = _warnings(tmp_path, dataset="mnist", data_dir=str(data))
    assert warning == (f"data_dir: dataset 'mnist' is missing from {data} (no {MNIST_FILES[0]}); trials fail: fetch "
                       "it or set download: true")
    (warning,) = _warnings(tmp_path, dataset="mnist", data_dir=str(data), download=True)
    assert warning.endswith("trials download it (download: true)")
    assert not data.exists()  # checked, never downloaded
    for name in MNIST_FILES:  # the files the loader opens (their contents are torchvision's to check)
        (data / name).parent.mkdir(parents=True, exist_ok=True)
        (data / name).touch()
    assert _warnings(tmp_path, dataset="mnist", data_dir=str(data)) == ()


def test_warns_when_a_grid_axis_overrides_a_variant(tmp_path):
    variants = [{"group": "p4", "input_size": 27}, {"group": "z2"},
                {"group": "p4", "input_size": 29, "train_symmetry": "c4"}]
    assert _warnings(tmp_path, variants=variants, grid={"seed": [0, 1]}) == ()
    warnings = _warnings(tmp_path, variants=variants, grid={"input_size": [28], "seed": [0, 1]})
    assert warnings == ("grid: axis 'input_size' overrides 'input_size' of variants[0], variants[2]; set it in the "
                        "variants or in the grid, not both",)


@pytest.mark.parametrize(("grace_period", "epochs", "warns"), [(2, 3, False), (3, 3, True), (4, 3, True)])
def test_warns_when_asha_grace_period_is_not_below_epochs(tmp_path, grace_period, epochs, warns):
    warnings = _warnings(tmp_path, epochs=epochs, scheduler={"grace_period": grace_period})
    expected = (f"scheduler.grace_period: {grace_period} is not below epochs ({epochs}), so ASHA stops no trial; "
                "lower grace_period or drop the scheduler")
    assert warnings == ((expected,) if warns else ())


def test_dry_run_prints_the_header_and_warns_on_stderr_one_line_each(tmp_path):
    spec = _spec(tmp_path, dataset="mnist", data_dir=str(tmp_path / "data"), scheduler={"grace_period": 3},
                 variants=[{"input_size": 27}], grid={"input_size": [28, 29]}, wandb={"mode": "disabled"})
    result = CliRunner().invoke(app, ["sweep", str(spec), "--dry-run"])
    assert result.exit_code == 0, result.output
    header, table = result.stdout.split("\n\n")
    assert header.splitlines()[1] == "wandb: disabled, project equisweep, group pre"
    assert table.splitlines()[-1] == "2 trials"
    warnings = result.stderr.splitlines()
    assert [line.split(": ")[2] for line in warnings] == ["data_dir", "grid", "scheduler.grace_period"]
    assert all(line.startswith("equisweep: warning: ") for line in warnings)
    assert not (tmp_path / "store").exists()
