"""The report's gain-against-asymmetry figure on synthetic tables: which rows it draws, where, and the report's
section on the measured asymmetry where it is absent or damaged (``test_report.py`` builds a report with one)."""

import numpy as np
import pandas as pd
import pytest

from equisweep.pipeline.report import figures as fg
from equisweep.pipeline.report.report import _asymmetry_blocks
from equisweep.pipeline.report.verdict import PAPERS_PAIR, verdict_table
from equisweep.pipeline.sweep.asymmetry_table import ASYMMETRY_FILE
from equisweep.pipeline.sweep.results import trial_row
from tests.pipeline.report.test_report import _result

# exact 28, approximate 29 with its adaptive exact 29 (so also a paper's-pair row), rpp 28; upright and c4
ARMS = [(28, True, "none", "stride"), (29, False, "none", "stride"), (29, True, "none", "adaptive"),
        (28, True, "rpp", "stride")]
ASYMMETRY = pd.DataFrame({"dataset": ["mnist5k", "mnist5k", "mnist69"], "train_symmetry": ["none", "c4", "none"],
                          "group": ["p4", "p4", "p4"], "asymmetry": [0.98, 0.51, 0.99], "low": [0.97, 0.48, 0.97],
                          "high": [0.99, 0.54, 1.0], "n": [2000, 2000, 400], "steps": [300] * 3, "seed": [0] * 3})


def _results(seeds=3) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for regime in ("none", "c4"):
        for size, exact, relaxation, subsampling in ARMS:
            for seed in range(seeds):
                tid = f"{regime}-{size}-{relaxation}-{subsampling}-{seed}"
                settings = {"dataset": "mnist5k", "model": "p4cnn", "group": "p4", "input_size": size,
                            "train_symmetry": regime, "relaxation": relaxation, "subsampling": subsampling,
                            "seed": seed}
                result = _result(rng, 0.9 + (0.02 if relaxation == "rpp" and regime == "none" else 0), exact)
                rows.append(trial_row(tid, tid, len(rows), settings, exact, "finished", None, 0, result))
    return pd.DataFrame(rows)


def test_each_compared_arm_is_a_point_at_its_datas_asymmetry_without_the_papers_pair():
    results = _results()
    verdicts = verdict_table(results)
    assert (verdicts.table["reference"] == PAPERS_PAIR).any()  # the table holds rows the figure must leave out

    points = fg.asymmetry_points(verdicts.table, verdicts.conditions, results, ASYMMETRY)
    assert set(zip(points["arm"], points["train_symmetry"])) == {
        ("p4 29 approx", "none"), ("p4 29 approx", "c4"), ("p4 28 rpp", "none"), ("p4 28 rpp", "c4")}
    assert len(points) == 4 * 4  # each arm and regime once per metric: the same-size reference only
    assert points.set_index("train_symmetry").loc["c4", "asymmetry"].eq(0.51).all()
    assert points.set_index("train_symmetry").loc["none", ["low", "high"]].drop_duplicates().values.tolist() == [
        [0.97, 0.99]]
    same_size = verdicts.table[(verdicts.table["reference"] == "same size")].set_index(["arm", "train_symmetry",
                                                                                        "metric"])
    for row in points.itertuples():
        verdict = same_size.loc[(row.arm, row.train_symmetry, row.metric)]
        assert row.gain == pytest.approx(100 * verdict["diff"])
        assert (row.gain_low, row.gain_high) == pytest.approx((100 * verdict["ci_low"], 100 * verdict["ci_high"]))
    drawn = fg.gain_by_asymmetry(points)
    drawn_points = sorted((bars.lines[0].get_xdata()[0], bars.lines[0].get_ydata()[0])
                          for ax in drawn.axes for bars in ax.containers)
    assert drawn_points == sorted(zip(points["asymmetry"], points["gain"]))


def test_without_an_asymmetry_table_the_report_says_nothing_of_it_and_a_damaged_one_is_named(tmp_path):
    assert _asymmetry_blocks(str(tmp_path)) == (None, [])
    (tmp_path / ASYMMETRY_FILE).write_bytes(b"not parquet")
    table, [(kind, text)] = _asymmetry_blocks(str(tmp_path))
    assert table is None and kind == "p"
    assert text.startswith(f"{ASYMMETRY_FILE} is damaged (") and "--resume" in text and "\n" not in text
