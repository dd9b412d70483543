"""The accuracy-over-angles figure draws only the angles at which the data defines a label: on mnist6-180 a turned 6
has a label at 0 and 180 degrees only, and the curve must not pretend to know the accuracy in between."""

import numpy as np
import pandas as pd

from equisweep.pipeline.report import figures as fg

SWEEP = tuple(float(a) for a in range(0, 360, 10))
DEFINED = {"mnist5k": SWEEP, "mnist6-180": (0.0, 180.0)}  # what a run reports: the label action's defined angles


def _tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    rows, angles = [], []
    for dataset, tested in DEFINED.items():
        for seed in range(2):
            trial = f"t{len(rows)}"
            rows.append({"trial_id": trial, "cell": len(rows), "status": "finished", "dataset": dataset,
                         "model": "p4cnn", "group": "p4", "input_size": 28, "train_symmetry": "none", "seed": seed,
                         "exact": True, "val_acc": 0.9, "test_acc_upright": 0.9})
            angles += [{"trial_id": trial, "angle": t, "accuracy": 0.9 - 0.001 * t + 0.01 * seed} for t in tested]
    return pd.DataFrame(rows), pd.DataFrame(angles)


def _line(ax):
    return next(line for line in ax.get_lines() if not line.get_label().startswith("_"))


def test_only_defined_angles_are_drawn_and_no_line_crosses_an_undefined_one():
    fig = fg.accuracy_by_angle(*_tables())
    digits, sixes = (ax for ax in fig.axes if ax.get_label() != fg.DENSITY_AXIS)
    assert sixes.get_title().startswith("mnist6-180")
    x, y = (np.asarray(v, dtype=float) for v in _line(sixes).get_data())
    finite = ~np.isnan(x)
    assert x[finite].tolist() == [0.0, 180.0, 360.0]  # 360 closes the circle with the 0-degree value
    assert np.isnan(x[1]) and np.isnan(x[3])  # a break between each two: nothing drawn at 90 or 270
    np.testing.assert_allclose(y[finite], [90.5, 72.5, 90.5])  # mean over the two seeds, in points
    assert _line(sixes).get_marker() == "o"  # isolated points stay visible
    x, _ = _line(digits).get_data()
    assert list(x) == [*SWEEP, 360.0]  # a full sweep is one unbroken line, as before
