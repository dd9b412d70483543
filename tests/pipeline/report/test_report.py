"""The report on synthetic sweep tables (fast): sections, files, partial sweeps, W&B-sourced tables, bad input."""

import re
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from equisweep.cli import app
from equisweep.errors import UserError
from equisweep.pipeline import vocabulary as m
from equisweep.pipeline.report import arms
from equisweep.pipeline.report import figures as fg
from equisweep.pipeline.report.report import _sweep_blocks, build_report
from equisweep.pipeline.report.text import display_table
from equisweep.pipeline.report.verdict import verdict_table
from equisweep.pipeline.report.wandb_runs import tables_from_runs
from equisweep.pipeline.sweep.asymmetry_table import ASYMMETRY_FILE
from equisweep.pipeline.sweep.results import angle_rows, read_angles, read_results, trial_row, write_tables
from equisweep.pipeline.train.tracking import flat_summary
from tests.helpers import read_wandb_run, run_python

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


def _trials(seeds: int, regimes=("none", "c4"), sizes=((28, True), (29, False)), group="p4", **settings):
    rng = np.random.default_rng(0)
    trials = []
    for regime in regimes:
        for size, exact in sizes:
            for seed in range(seeds):
                row = {"dataset": "mnist5k", "epochs": 3, "model": "p4cnn", "group": group, "input_size": size,
                       "train_symmetry": regime, "seed": seed, "optimizer": "adam", "momentum": 0.9,
                       "schedule": "none", "step_size": 10, "gamma": 0.5,
                       "wandb": {"project": "equisweep-test", "mode": "offline"}} | settings
                trials.append((f"{group}-{regime}-{size}-{seed}", row, exact, _result(rng, 0.9, bool(exact))))
    return trials


def _write_sweep(path, trials, failed=0) -> str:
    rows = [trial_row(tid, tid, i, s, exact, "finished", None, 0, r) for i, (tid, s, exact, r) in enumerate(trials)]
    rows += [trial_row(f"bad{i}", f"bad{i}", None, trials[0][1], True, "failed", "FloatingPointError: nan", 0, {})
             for i in range(failed)]
    write_tables(str(path), rows, [a for tid, _, _, r in trials for a in angle_rows(tid, r)])
    return str(path)


def test_report_has_every_section_and_file(tmp_path):
    sweep = _write_sweep(tmp_path / "synthetic", _trials(seeds=5), failed=1)
    pd.DataFrame({"dataset": "mnist5k", "train_symmetry": ["none", "c4"], "group": "p4", "asymmetry": [0.98, 0.51],
                  "low": [0.97, 0.48], "high": [0.99, 0.54], "n": 2000, "steps": 300, "seed": 0}).to_parquet(
        tmp_path / "synthetic" / ASYMMETRY_FILE)  # the sweep measured its data (spec: asymmetry: true)
    report = build_report(sweep)

    text = (report.out_dir / "report.md").read_text()
    positions = [text.index(section) for section in (
        "## Summary", "## Metrics", "## Verdict", "## Accuracy over test rotation angle", "## Gap map",
        "## Equivariance error per layer", "## Gain against the asymmetry of the data", "## Asymmetry of the data",
        "## Sweep")]
    assert positions == sorted(positions)
    assert "## What the families learned" not in text  # no family arm, no family/ column
    assert "| mnist5k | c4 | p4 | 0.510 [0.480, 0.540] | 2000 | 300 | 0 |" in text
    assert "Sweep synthetic: 21 trials, 20 finished, 1 failed" in text
    assert "| bad0 | FloatingPointError: nan |" in text  # failed trials with their reasons
    assert "0.07 h of trial time" in text  # 20 trials x 12 s
    verdict = pd.read_csv(report.out_dir / "verdict.csv").set_index(["train_symmetry", "label"])
    assert verdict.loc[("none", "orbit"), "verdict"] == "exact wins"
    assert verdict.loc[("none", "orbit"), "diff"] == pytest.approx(-0.1, abs=0.01)
    html = (report.out_dir / "report.html").read_text()
    assert html.count("<img") == len(report.figures) == 4 and "data:image/png;base64," in html
    assert "exact wins" in report.terminal() and str(report.out_dir / "report.md") in report.terminal()
    assert not (report.out_dir / "wandb").exists()  # no W&B unless asked, even with the sweep's mode offline

    # every metric defined once, in its own section; every caption says what was trained and how often
    metrics = text.split("## Metrics")[1].split("##")[0]
    for term in ("upright:", "orbit:", "mean over angles and min over angles:", "eq_error:"):
        assert text.count(term) == 1 and term in metrics
    assert "the 3 test rotations (0°, 45°, 90°)" in metrics
    captions = re.findall(r"^\*(.*)\* \(\[SVG\]", text, flags=re.M)
    assert len(captions) == len(report.figures) == 4
    assert all(c.endswith("Dataset mnist5k, 3 epochs, 5 seeds per arm.") for c in captions)


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
    assert set(report.verdicts.table["verdict"]) == {"inconclusive"}
    assert not (report.out_dir / "report.html").exists()


def test_a_running_sweep_reports_its_finished_trials(tmp_path):
    trials = _trials(seeds=3)
    sweep = tmp_path / "running"
    rows = [trial_row(tid, tid, i, s, exact, "finished" if i % 2 else "running", None, 0, r if i % 2 else {})
            for i, (tid, s, exact, r) in enumerate(trials)]
    write_tables(str(sweep), rows, [a for i, (tid, _, _, r) in enumerate(trials) if i % 2 for a in angle_rows(tid, r)])
    report = build_report(str(sweep))
    assert report.verdicts.table["exact_n"].sum() + report.verdicts.table["arm_n"].sum() == 4 * 6


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


def _with_plain_cnn(tmp_path, name: str, plain_exact) -> str:
    trials = _trials(seeds=3) + _trials(seeds=3, sizes=((28, plain_exact),), group="z2")
    return _write_sweep(tmp_path / name, trials)


@pytest.mark.parametrize("plain_exact", [None, True], ids=["new-table", "older-table-z2-exact"])
def test_the_plain_cnn_has_exact_empty_everywhere_and_is_a_reference_row(tmp_path, plain_exact):
    report = build_report(_with_plain_cnn(tmp_path, "plain", plain_exact))
    csv = pd.read_csv(report.out_dir / "verdict.csv", keep_default_na=False)
    plain = csv[csv["arm"] == "plain CNN 28"]
    assert len(plain) == 2 * 4 and set(plain["exact"]) == {""} and set(plain["verdict"]) == {"reference"}
    assert set(plain["p_value"]) == {""} and set(csv.loc[csv["arm"] == "p4 29 approx", "exact"]) == {"False"}
    text = (report.out_dir / "report.md").read_text()
    rows = [line for line in text.splitlines() if "| plain CNN 28 |" in line]
    assert len(rows) == 8 and all(line.endswith("|  |  |  |  |  |  | reference |") for line in rows)
    assert "z2" not in "".join(rows) and "| p4 29 approx | " in text and "| p4 28 exact (nearest exact size) | " in text
    assert "Reference, not tested: the plain CNN 28 (3 seeds) reaches" in text
    html = (report.out_dir / "report.html").read_text()
    assert html.count("<td>plain CNN 28</td>") == 8


@pytest.mark.parametrize(("settings", "shown", "hidden"), [
    ({}, set(), {"momentum", "step_size", "gamma"}),
    ({"optimizer": "sgd", "schedule": "step"}, {"momentum", "step_size", "gamma"}, set()),
    ({"optimizer": "sgd", "schedule": "cosine"}, {"momentum"}, {"step_size", "gamma"}),
])
def test_the_sweep_section_shows_only_the_settings_that_act(tmp_path, settings, shown, hidden):
    results = read_results(_write_sweep(tmp_path / "settings", _trials(seeds=1, **settings)))
    tables = [content[0] for kind, content in _sweep_blocks("settings", results) if kind == "table"]
    names = {*tables[0]["varying setting"], *tables[1]["shared setting"]}
    assert {"optimizer", "schedule", "dataset", "epochs", "train_symmetry"} <= names
    assert shown <= names and not hidden & names


def test_the_gap_map_lists_its_rows_in_the_tables_order(tmp_path):
    trials = _trials(seeds=2, regimes=("uniform", "none", "gaussian(45,20)", "c4"),
                     sizes=((27, False), (28, True), (29, False)))
    sweep = _write_sweep(tmp_path / "order", trials)
    results = read_results(sweep)
    verdicts = verdict_table(results)
    shown = display_table(verdicts)
    table_rows = list(dict.fromkeys(f"{regime}, {arm}" for regime, arm in zip(shown["train_symmetry"], shown["arm"])))
    assert table_rows[:3] == ["none, p4 27 approx", "none, p4 29 approx", "gaussian(45,20), p4 27 approx"]
    gap_map = fg.gap_map(verdicts.table, conditions=verdicts.conditions)
    assert [t.get_text() for t in gap_map.axes[0].get_yticklabels()] == table_rows


@pytest.mark.slow
def test_log_to_wandb_twice_leaves_one_summary_run(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    sweep = _write_sweep(tmp_path / "logged", _trials(seeds=2))
    out = tmp_path / "out"
    runner = CliRunner()
    quiet = runner.invoke(app, ["report", sweep, "--out", str(out), "--format", "md"])
    assert quiet.exit_code == 0, quiet.output
    assert not (out / "wandb").exists()  # the default: no W&B at all
    for _ in range(2):
        result = runner.invoke(app, ["report", sweep, "--out", str(out), "--format", "md", "--log-to-wandb"])
        assert result.exit_code == 0, result.output
    runs = list((out / "wandb").glob("offline-run-*"))
    assert [run.name.rsplit("-", 2)[-2:] for run in runs] == [["logged", "report"]]  # one run, id logged-report
    (run_file,) = runs[0].glob("run-*.wandb")
    assert run_file.name == "run-logged-report.wandb"
    logged = read_wandb_run(run_file)
    assert logged["group"] == "logged" and {"verdict", "gap_map"} <= {k.split("/")[0] for k in logged["history_keys"]}


def test_the_report_imports_no_torch():
    probe = "import sys, equisweep.pipeline.report.report; assert 'torch' not in sys.modules, 'torch loaded'"
    run = run_python(probe)
    assert run.returncode == 0, run.stdout + run.stderr


def test_a_column_not_declared_as_a_setting_is_never_a_condition(tmp_path):
    results = read_results(_write_sweep(tmp_path / "s", _trials(seeds=2)))
    with_host = results.assign(hostname=[f"node{i}" for i in range(len(results))])  # a new bookkeeping column
    assert "hostname" not in arms.setting_columns(with_host)
    assert verdict_table(with_host).conditions == verdict_table(results).conditions == ["train_symmetry"]
    shown = _sweep_blocks("s", with_host)
    assert "hostname" not in [*shown[1][1][0]["varying setting"], *shown[2][1][0]["shared setting"]]


def test_an_older_table_without_a_newer_metric_still_reports(tmp_path):
    sweep = _write_sweep(tmp_path / "old", _trials(seeds=2))
    full = read_results(sweep)
    full.drop(columns=[m.LEE, m.BEST_EPOCH]).to_parquet(tmp_path / "old" / "results.parquet")
    older = build_report(sweep, formats=("md",))
    pd.testing.assert_frame_equal(older.verdicts.table, verdict_table(full).table)
