"""The sweep's asymmetry table: one real (short) measurement per distinct dataset, regime and group, none again on
resume, a damaged table measured again with one warning, and a group the measurement cannot use refused in one
line."""

import logging

import pandas as pd
import pytest

from equisweep.errors import UserError
from equisweep.pipeline.sweep.asymmetry_table import ASYMMETRY_FILE, COLUMNS, conditions, record_asymmetry
from equisweep.pipeline.train.config import RunConfig

STEPS = 3  # the classifier's steps: the table's bookkeeping is under test here, not the measurement


def _configs(tmp_path, *cells):
    return [RunConfig.from_flat({"dataset": "mnist69", "data_dir": str(tmp_path / "data"), "train_symmetry": regime,
                                 "group": group, "input_size": size})
            for regime, group, size in cells]


@pytest.mark.slow  # four real measurements
def test_each_condition_is_measured_once_and_resume_measures_only_what_is_missing(tmp_path, caplog):
    # five cells, three conditions: the plain CNN's data is measured under p4, every input size at the source's own
    configs = _configs(tmp_path, ("none", "p4", 28), ("none", "z2", 28), ("none", "p4", 29), ("none", "p4m", 28),
                       ("c4", "p4", 28))
    assert [c.key for c in conditions(configs)] == [("mnist69", "none", "p4"), ("mnist69", "none", "p4m"),
                                                   ("mnist69", "c4", "p4")]
    assert {c.input_size for c in conditions(configs)} == {None}
    configs = configs[:4]  # two conditions to measure
    store = str(tmp_path / "sweep")
    table = record_asymmetry(store, configs, steps=STEPS)
    written = pd.read_parquet(tmp_path / "sweep" / ASYMMETRY_FILE)
    assert list(written.columns) == COLUMNS and written.equals(table) and len(written) == 2
    assert set(written["steps"]) == {STEPS} and set(written["n"]) == {400} and set(written["seed"]) == {0}
    assert ((written["low"] <= written["asymmetry"]) & (written["asymmetry"] <= written["high"])).all()

    # --resume: what the table holds stays; only a condition it lacks is measured, with the steps given now
    assert record_asymmetry(store, configs, steps=STEPS + 1).equals(written)
    written.iloc[:1].to_parquet(tmp_path / "sweep" / ASYMMETRY_FILE, index=False)
    resumed = record_asymmetry(store, configs, steps=STEPS + 1)
    assert resumed["steps"].tolist() == [STEPS, STEPS + 1] and resumed.iloc[:1].equals(written.iloc[:1])

    # a damaged table: one warning, measured again, no crash
    (tmp_path / "sweep" / ASYMMETRY_FILE).write_bytes(b"PAR1 cut short")
    with caplog.at_level(logging.WARNING, logger="equisweep.pipeline.sweep.asymmetry_table"):
        again = record_asymmetry(store, configs[:1], steps=STEPS + 2)
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == [f"{ASYMMETRY_FILE} is damaged"]
    assert again["steps"].tolist() == [STEPS + 2]
    assert pd.read_parquet(tmp_path / "sweep" / ASYMMETRY_FILE).equals(again)


def test_a_group_whose_rotations_leave_the_pixel_grid_is_refused_in_one_line(tmp_path):
    configs = [RunConfig.from_flat({"dataset": "mnist69", "group": "c8", "backend": "e2cnn"})]
    with pytest.raises(UserError, match=r"^asymmetry: the data of the c8 arms would be measured under c8, .* set "
                                        r"asymmetry: false$"):
        conditions(configs)
