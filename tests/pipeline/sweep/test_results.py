"""The results tables and finished records on storage: JSON-safe values, list settings, write order, concurrency."""

import json
import threading

import numpy as np
import pytest

from equisweep.pipeline.sweep import results as r

SETTINGS = {"group": "p4", "input_size": 28, "angles": [0.0, 90.0, 45.0], "download": False,
            "wandb": {"project": "p", "mode": "offline", "tags": ["exact", "p4"]}}
RESULT = {"test_acc_upright": 0.9, "test_acc_by_angle": {"0.0": 0.9, "45.0": 0.8}}


def test_a_finished_record_casts_numpy_scalars_and_refuses_what_json_cannot_hold(tmp_path):
    sweep = str(tmp_path / "sweep")
    r.record_finished(sweep, "t1", {"test_acc_upright": np.float32(0.5), "params": np.int64(7),
                                    "by_angle": {"0.0": np.float64(0.25)}, "sizes": (np.int32(28), 29)})
    stored = json.loads((tmp_path / "sweep" / "finished" / "t1.json").read_text())
    assert stored == {"test_acc_upright": 0.5, "params": 7, "by_angle": {"0.0": 0.25}, "sizes": [28, 29]}
    assert r.load_finished(sweep) == {"t1": stored}

    with pytest.raises(TypeError, match=r"the result of trial t2\.by_angle\.0\.0: a object cannot be stored as JSON"):
        r.record_finished(sweep, "t2", {"by_angle": {"0.0": object()}})
    assert not (tmp_path / "sweep" / "finished" / "t2.json").exists()


def test_list_settings_stay_in_result_rows_as_json_text():
    row = r.trial_row("t1", "t1", 0, SETTINGS, None, "finished", None, 0, RESULT)
    assert json.loads(row["angles"]) == [0.0, 90.0, 45.0]
    assert json.loads(row["wandb_tags"]) == ["exact", "p4"]
    assert (row["wandb_project"], row["wandb_mode"], row["download"], row["exact"]) == ("p", "offline", False, None)


def test_angles_are_written_before_results(tmp_path):
    sweep = tmp_path / "sweep"
    (sweep / r.ANGLES_FILE).mkdir(parents=True)  # the angles table cannot be replaced
    rows = [r.trial_row("t1", "t1", 0, SETTINGS, True, "finished", None, 0, RESULT)]
    with pytest.raises(IsADirectoryError):
        r.write_tables(str(sweep), rows, r.angle_rows("t1", RESULT))
    assert not (sweep / r.RESULTS_FILE).exists()  # so no reader sees the trial finished without its angles
    assert [path.name for path in sweep.iterdir()] == [r.ANGLES_FILE]  # and no temporary file is left behind


def test_two_writers_of_the_same_tables_never_collide(tmp_path):
    sweep = str(tmp_path / "sweep")
    errors: list[BaseException] = []

    def write(trial_id: str) -> None:
        rows = [r.trial_row(trial_id, trial_id, 0, SETTINGS, True, "finished", None, 0, RESULT)]
        try:
            for _ in range(40):
                r.write_tables(sweep, rows, r.angle_rows(trial_id, RESULT))
        except BaseException as err:
            errors.append(err)

    writers = [threading.Thread(target=write, args=(trial_id,)) for trial_id in ("a", "b")]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    assert errors == []
    assert r.read_results(sweep)["trial_id"].tolist() in (["a"], ["b"])
    assert sorted(path.name for path in (tmp_path / "sweep").iterdir()) == [r.ANGLES_FILE, r.RESULTS_FILE]
