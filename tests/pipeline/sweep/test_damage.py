"""Results that survive damage: a truncated or deleted table, a lost finished record, on a real finished sweep.

One real sweep (two trials of mnist69, one epoch) serves every case; each damages its own copy. A resumed sweep
must be where it ran (Tune's saved state names that place), so those cases put a fresh copy back there first.
"""

import json
import logging
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from equisweep import cli
from equisweep.pipeline.sweep import results as r
from equisweep.pipeline.sweep.driver import check_resumable, run_sweep
from equisweep.pipeline.sweep.heartbeat import read_driver
from equisweep.pipeline.sweep.spec import load_sweep
from equisweep.pipeline.sweep.status import status_text

pytestmark = pytest.mark.slow

SPEC = {"name": "mend", "dataset": "mnist69", "model": "p4cnn", "group": "z2", "epochs": 1, "batch_size": 8,
        "lr": 3e-3, "dropout": 0.0, "schedule": "none", "angles": [0, 90], "eq_error_samples": 8,
        "bn_calibration_batches": 2, "resources": {"cpu": 1}, "wandb": {"mode": "disabled"},
        "grid": {"seed": [0, 1]}, "pack": 1}


@pytest.fixture(scope="module")
def finished(tmp_path_factory, ray_local):
    """The spec, the directory of its finished sweep and an untouched copy of that directory."""
    root = tmp_path_factory.mktemp("mend")
    spec = root / "mend.yaml"
    spec.write_text(yaml.safe_dump({**SPEC, "storage": str(root / "store")}))
    outcome = run_sweep(load_sweep(spec), verbose=0)
    assert outcome.counts == {"finished": 2}
    pristine = shutil.copytree(outcome.path, root / "pristine" / "mend")
    return spec, Path(outcome.path), pristine


def _copy(finished, where: Path) -> Path:
    return shutil.copytree(finished[2], where / "mend")


def _at_home(finished) -> Path:
    """A fresh copy where the sweep ran, for a resume."""
    shutil.rmtree(finished[1])
    return shutil.copytree(finished[2], finished[1])


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """The installed command's entry point, in this process: its exit code, stdout and stderr."""
    monkeypatch.setattr(sys, "argv", ["equisweep", *args])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    out, err = capsys.readouterr()
    return exit_.value.code, out, err


def test_a_finished_sweep_marks_its_driver_ended(finished):
    driver = read_driver(str(finished[2]))
    assert driver is not None and driver.ended_at >= driver.heartbeat >= driver.started_at
    assert status_text(str(finished[2])).splitlines()[1].endswith(", done")


@pytest.mark.parametrize(("damage", "problem"), [
    (lambda sweep: _truncate(sweep / r.RESULTS_FILE), "results.parquet in {} is damaged (Could not open Parquet"),
    (lambda sweep: (sweep / r.RESULTS_FILE).unlink(), "results.parquet in {} is missing although trials finished"),
    (lambda sweep: _truncate(sweep / r.ANGLES_FILE), "angles.parquet in {} is damaged ("),
])
def test_report_and_status_on_a_damaged_table_name_the_fix(finished, tmp_path, monkeypatch, capsys, damage, problem):
    sweep = _copy(finished, tmp_path)
    damage(sweep)
    commands = [["report", str(sweep), "--out", str(tmp_path / "report")], ["sweep", "--status", str(sweep)]]
    for args in commands[:1] if "angles" in problem else commands:  # --status reads only the results table
        code, out, err = _cli(monkeypatch, capsys, *args)
        assert code == 2 and out == "", args
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"equisweep: error: sweep_dir: {problem.format(sweep)}")
        assert lines[0].endswith("; rebuild it from the finished records with: equisweep sweep SPEC --resume "
                                 "(SPEC: the sweep's YAML)")
    assert not (tmp_path / "report").exists()


@pytest.mark.parametrize("damage", [_truncate, Path.unlink])
def test_resume_rebuilds_the_tables_from_the_finished_records(finished, caplog, damage):
    spec, _, pristine = finished
    sweep = _at_home(finished)
    damage(sweep / r.RESULTS_FILE)
    with caplog.at_level(logging.WARNING, logger="equisweep"):
        outcome = run_sweep(load_sweep(spec), resume=True, verbose=0)
    assert outcome.counts == {"finished": 2}
    problem = "is damaged" if damage is _truncate else "is missing although trials finished"
    assert f"results.parquet {problem}" in caplog.text
    assert ": rebuilt results.parquet and angles.parquet from the finished records: 2 rows, 2 finished" in caplog.text
    # The very rows and angles the sweep wrote: nothing trained again, nothing lost.
    pd.testing.assert_frame_equal(r.read_results(str(sweep)), r.read_results(str(pristine)))
    angles = [r.read_angles(str(d)).sort_values("trial_id", kind="stable", ignore_index=True)
              for d in (sweep, pristine)]
    pd.testing.assert_frame_equal(*angles)  # the same rows; the trials' order is Tune's


def test_a_lost_finished_record_is_written_back_from_the_table(finished, tmp_path, caplog):
    spec = finished[0]
    sweep = _copy(finished, tmp_path)
    lost = sorted((sweep / r.FINISHED_DIR).glob("*.json"))[0]
    original = json.loads(lost.read_text())
    lost.unlink()
    with caplog.at_level(logging.WARNING, logger="equisweep"):
        assert check_resumable(load_sweep(spec, {"storage": str(tmp_path)}), resume=True)
    assert f"wrote back the finished records of {lost.stem} from results.parquet" in caplog.text
    written = json.loads(lost.read_text())
    assert written == {key: value for key, value in original.items() if key != "best_checkpoint"}
    caplog.clear()
    check_resumable(load_sweep(spec, {"storage": str(tmp_path)}), resume=True)  # nothing left to write back
    assert "wrote back" not in caplog.text
