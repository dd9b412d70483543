"""``equisweep data asymmetry``: a small classifier telling an image from the same image transformed by a random
non-identity element, scored on held-out images. Digits have an up direction, so upright mnist5k is far from
invariant; under c4 training every quarter turn of a digit is as likely as the digit, so the accuracy is chance.

Margins come from the spread measured over seeds 0-2 at 100 steps: upright 0.91 / 0.95 / 0.96, c4 0.503 / 0.514 /
0.492 (each interval about +-0.022 wide on the 2,000 held-out images)."""

import json
import sys

import pytest

from equisweep.cli import main
from equisweep.datamodules.asymmetry import measure_asymmetry
from tests.test_bad_input import _refused

STEPS = 100


@pytest.mark.slow
@pytest.mark.trains
def test_upright_digits_are_far_from_invariant():
    result = measure_asymmetry("mnist5k", "p4", "none", seed=0, steps=STEPS)
    assert result.n == 2000 and result.low <= result.accuracy <= result.high
    assert result.low > 0.85, result


@pytest.mark.slow
@pytest.mark.trains
def test_digits_under_c4_training_are_invariant(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["equisweep", "data", "asymmetry", "mnist5k", "--train-symmetry", "c4",
                                      "--steps", str(STEPS), "--json"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 0
    result = json.loads(capsys.readouterr().out)  # exactly one JSON object on stdout
    assert (result["dataset"], result["group"], result["train_symmetry"], result["n"]) == ("mnist5k", "p4", "c4", 2000)
    assert result["low"] <= 0.5 <= result["high"] or abs(result["accuracy"] - 0.5) < 0.03, result


@pytest.mark.parametrize(("args", "message"), [
    (["svhn"], "dataset: unknown dataset 'svhn'; choose from: "),
    (["mnist5k", "--group", "z2"], "group: 'z2' has no non-identity element that maps the pixel grid onto itself"),
    (["mnist5k", "--group", "c8"], "group: 'c8' has no non-identity element that maps the pixel grid onto itself"),
    (["mnist5k", "--group", "q4"], "group: unknown group 'q4'"),
    (["mnist5k", "--train-symmetry", "c5"], "train_symmetry: unknown regime 'c5'"),
    (["folder"], "input_size: folder holds images of many sizes; give --input-size"),
])
def test_bad_input_is_one_line(capsys, monkeypatch, args, message):
    assert _refused(capsys, monkeypatch, "data", "asymmetry", *args).startswith(message)
