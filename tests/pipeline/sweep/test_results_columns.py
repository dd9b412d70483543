"""The results table's declared columns: derived from the run config, importable without torch, and enforced where
rows and final results are made (strictly in tests: ``tests/conftest.py`` sets ``columns.STRICT``)."""

import pytest

from equisweep.pipeline import vocabulary as m
from equisweep.pipeline.sweep import columns
from equisweep.pipeline.sweep import results as r
from equisweep.pipeline.train.config import RunConfig
from tests.helpers import run_python

# what run_one returns (its keys; the values do not matter here)
RUN_RESULT = {m.TEST_ACC_UPRIGHT: 0.9, m.TEST_ACC_ORBIT: 0.8, m.TEST_ACC_BY_ANGLE: {0.0: 0.9, 90.0: 0.7},
              m.TEST_ACC_MEAN_ANGLES: 0.8, m.TEST_ACC_MIN_ANGLES: 0.7, m.VAL_ACC: 0.9, m.EXACT: True, m.EQ_ERROR: 0.0,
              m.EQ_ERROR_BY_LAYER: {"block1": 0.0}, m.LEE: 0.01, m.PARAMS: 1000, m.TRAIN_SECONDS: 3.0,
              m.BEST_CHECKPOINT: "checkpoints/best.ckpt", m.BEST_EPOCH: 0}


def test_the_declared_settings_are_the_run_configs_leaves():
    leaves = columns.flat_settings(RunConfig().model_dump(mode="json"))  # nested models, each leaf a column
    assert sorted(columns.SETTINGS) == sorted(leaves)
    assert len(set(columns.COLUMNS)) == len(columns.COLUMNS)  # every column declared once, in one role
    assert set(columns.NAMING_SETTINGS) <= set(columns.SETTINGS)


def test_the_declaration_imports_no_torch():
    run = run_python("import sys, equisweep.pipeline.sweep.columns as c; assert c.SETTINGS and c.METRICS; "
                     "assert 'torch' not in sys.modules, 'torch loaded'")
    assert run.returncode == 0, run.stdout + run.stderr


def test_grouped_settings_become_one_column_per_leaf():
    row = r.trial_row("t1", "t1", 0, {"model": {"model": "p4cnn", "group": "p4"}, "optim": {"lr": 0.1}, "seed": 3,
                                      "wandb": {"project": "p", "group": "sweep"}}, True, "finished", None, 0, {})
    assert {key: row[key] for key in ("model", "group", "lr", "seed", "wandb_project", "wandb_group")} == {
        "model": "p4cnn", "group": "p4", "lr": 0.1, "seed": 3, "wandb_project": "p", "wandb_group": "sweep"}
    assert all(columns.is_declared(key) for key in row)


def test_a_row_with_an_undeclared_column_raises_in_tests_and_warns_a_user(monkeypatch):
    settings = {"group": "p4", "hostname": "node1"}
    with pytest.raises(ValueError, match="undeclared setting column.*'hostname'"):
        r.trial_row("t1", "t1", 0, settings, True, "finished", None, 0, {})
    monkeypatch.delenv(columns.STRICT)
    with pytest.warns(UserWarning, match="'hostname'"):
        row = r.trial_row("t1", "t1", 0, settings, True, "finished", None, 0, {})
    assert row["group"] == "p4" and "hostname" not in row


@pytest.mark.parametrize(("result", "message"), [
    ({**RUN_RESULT, "new_metric": 0.5}, "reported 'new_metric', which no column takes"),
    ({key: value for key, value in RUN_RESULT.items() if key != m.LEE}, "did not report the declared metric.*'lee'"),
], ids=["undeclared", "missing"])
def test_a_final_result_that_strays_from_the_declared_metrics_raises_in_tests_and_warns_a_user(
        monkeypatch, result, message):
    assert r.final_result(RUN_RESULT, epochs=1)[m.EPOCH] == 1  # what a run returns fits the declaration
    with pytest.raises(ValueError, match=message):
        r.final_result(result, epochs=1)
    monkeypatch.delenv(columns.STRICT)
    with pytest.warns(UserWarning, match=message):
        record = r.final_result(result, epochs=1)
    assert record.get("new_metric") == result.get("new_metric")  # the finished record keeps what the run reported
