"""``equisweep check`` end to end, as a user runs it."""

import json
import subprocess
import sys

import pytest


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
