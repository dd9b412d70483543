"""The report on synthetic sweep tables (fast): sections, files, partial sweeps, W&B-sourced tables, bad input."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from equisweep.errors import UserError
from equisweep.pipeline.report.report import build_report
from equisweep.pipeline.report.wandb_runs import tables_from_runs
from equisweep.pipeline.sweep.results import angle_rows, read_angles, read_results, trial_row, write_tables
from equisweep.pipeline.train import metrics as m
from equisweep.pipeline.train.tracking import flat_summary

ANGLES = [0.0, 45.0, 90.0]


def _result(rng: np.random.Generator, upright: float, exact: bool) -> dict:
    by_angle = {a: float(np.clip(upright - (0 if a % 90 == 0 or exact else 0.2) + rng.normal(0, 0.003), 0, 1))
                for a in ANGLES}
    orbit = upright - (0 if exact else 0.1) + rng.normal(0, 0.003)
    return {m.VAL_ACC: upright, m.TEST_ACC_UPRIGHT: by_angle[0.0], m.TEST_ACC_ORBIT: orbit,
            m.TEST_ACC_MEAN_ANGLES: float(np.mean(list(by_angle.values()))),
            m.TEST_ACC_MIN_ANGLES: min(by_angle.values()), m.EXACT: exact, m.EQ_ERROR: 1e-7 if exact else 0.1,
            m.TRAIN_SECONDS: 10.0, m.EPOCH: 1, m.TEST_ACC_BY_ANGLE: by_angle, "time_total_s": 12.0,
            m.EQ_ERROR_BY_LAYER: {"block1": 1e-7, "block2": 1e-7 if exact else 0.3, "output": 1e-7 if exact else 0.1}}


def _trials(seeds: int, regimes=("none", "c4"), sizes=((28, True), (29, False))):
    rng = np.random.default_rng(0)
    trials = []
    for regime in regimes:
        for size, exact in sizes:
            for seed in range(seeds):
                settings = {"model": "p4cnn", "group": "p4", "input_size": size, "train_symmetry": regime,
                            "seed": seed, "wandb": {"project": "equisweep-test", "mode": "disabled"}}
                trials.append((f"{regime}-{size}-{seed}", settings, exact, _result(rng, 0.9, exact)))
    return trials


def _write_sweep(path, trials, failed=0) -> str:
    rows = [trial_row(tid, tid, i, s, exact, "finished", None, 0, r) for i, (tid, s, exact, r) in enumerate(trials)]
    rows += [trial_row(f"bad{i}", f"bad{i}", None, trials[0][1], True, "failed", "FloatingPointError: nan", 0, {})
             for i in range(failed)]
    write_tables(str(path), rows, [a for tid, _, _, r in trials for a in angle_rows(tid, r)])
    return str(path)


def test_report_has_every_section_and_file(tmp_path):
    sweep = _write_sweep(tmp_path / "synthetic", _trials(seeds=5), failed=1)
    report = build_report(sweep)

    text = (report.out_dir / "report.md").read_text()
    for section in ("## Summary", "## Verdict", "## Accuracy over test rotation angle", "## Gap map",
                    "## Equivariance error per layer", "## Sweep"):
        assert section in text
    assert "Sweep synthetic: 21 trials, 20 finished, 1 failed" in text
    assert "| bad0 | FloatingPointError: nan |" in text  # failed trials with their reasons
    assert "0.07 h of trial time" in text  # 20 trials x 12 s
    verdict = pd.read_csv(report.out_dir / "verdict.csv").set_index(["train_symmetry", "label"])
    assert verdict.loc[("none", "orbit"), "verdict"] == "exact wins"
    assert verdict.loc[("none", "orbit"), "diff"] == pytest.approx(-0.1, abs=0.01)
    html = (report.out_dir / "report.html").read_text()
    assert html.count("<img") == len(report.figures) == 3 and "data:image/png;base64," in html
    assert "exact wins" in report.terminal() and str(report.out_dir / "report.md") in report.terminal()


def test_gaps_along_input_size_and_gaussian_std_when_the_sweep_varies_them(tmp_path):
    trials = _trials(seeds=3, regimes=("gaussian(45,20)", "gaussian(45,40)"),
                     sizes=((27, False), (28, True), (29, False)))
    report = build_report(_write_sweep(tmp_path / "gaussians", trials), formats=("html",))
    assert set(report.figures) == {"accuracy_by_angle", "gap_map", "gap_by_input_size", "gap_by_gaussian_std",
                                   "layer_errors"}
    html = (report.out_dir / "report.html").read_text()
    assert html.count("<img") == 5 and "Gap by the spread of training angles" in html
    assert all(path.is_file() for paths in report.figures.values() for path in paths)


def test_one_seed_reports_means_without_tests(tmp_path):
    report = build_report(_write_sweep(tmp_path / "one", _trials(seeds=1)), formats=("md",))
    text = (report.out_dir / "report.md").read_text()
    assert "with one seed per arm there is no test; means only" in text
    assert set(report.verdicts.table["verdict"]) == {"n/a"}
    assert not (report.out_dir / "report.html").exists()


def test_a_running_sweep_reports_its_finished_trials(tmp_path):
    trials = _trials(seeds=3)
    sweep = tmp_path / "running"
    rows = [trial_row(tid, tid, i, s, exact, "finished" if i % 2 else "running", None, 0, r if i % 2 else {})
            for i, (tid, s, exact, r) in enumerate(trials)]
    write_tables(str(sweep), rows, [a for i, (tid, _, _, r) in enumerate(trials) if i % 2 for a in angle_rows(tid, r)])
    report = build_report(str(sweep))
    assert report.verdicts.table["exact_n"].sum() + report.verdicts.table["approx_n"].sum() == 4 * 6


def test_tables_rebuilt_from_wandb_runs_match_the_local_ones(tmp_path):
    trials = _trials(seeds=2)
    local = _write_sweep(tmp_path / "local", trials)
    # stand-ins for wandb.Api().runs(...) objects: no W&B server is reachable here
    runs = [SimpleNamespace(id=tid, name=tid, state="finished", config=settings,
                            summary=flat_summary(result) | {"time_total_s": result["time_total_s"]})
            for tid, settings, _, result in trials]
    results, angles = tables_from_runs(runs)
    expected = read_results(local).drop(columns=["cell"])
    pd.testing.assert_frame_equal(results[expected.columns].reset_index(drop=True), expected.reset_index(drop=True),
                                  check_dtype=False)
    pd.testing.assert_frame_equal(angles, read_angles(local), check_dtype=False)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"formats": ("pdf",)}, "format: choose from md, html"),
    ({"source": "s3"}, "source: choose local or wandb"),
])
def test_bad_report_options(tmp_path, kwargs, message):
    with pytest.raises(UserError, match=message):
        build_report(_write_sweep(tmp_path / "s", _trials(seeds=1)), **kwargs)


def test_a_directory_without_results_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="sweep_dir: no results.parquet in"):
        build_report(str(tmp_path))
    rows = [trial_row("t", "t", 0, {"group": "p4"}, True, "pending", None, 0, {})]
    write_tables(str(tmp_path / "new"), rows, [])
    with pytest.raises(UserError, match="no finished trial in"):
        build_report(str(tmp_path / "new"))
