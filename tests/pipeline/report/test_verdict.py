"""The exact-vs-approximate verdicts on synthetic results tables with planted gaps (no Ray, no training)."""

import ast
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from equisweep.pipeline.report import verdict as v

METRICS = list(v.REPORT_METRICS)
REGIMES = ("none", "gaussian(45,20)")
# per metric: (exact mean, approx mean) as fractions; noise std 0.3 points in every arm
PLANTED = {"test_acc_upright": (0.970, 0.980), "test_acc_orbit": (0.950, 0.750),
           "test_acc_mean_angles": (0.900, 0.900), "test_acc_min_angles": (0.800, 0.800)}
NOISE = 0.003


def _row(trial: int, cell: int, group: str, size: int, regime: str, seed: int, values: dict[str, float],
         status: str = "finished", **settings) -> dict:
    return {"trial_id": f"t{trial:05d}", "trial_name": f"run_trial_t{trial:05d}", "cell": cell, "status": status,
            "error": "boom" if status == "failed" else None, "attempts": 1, "dataset": "mnist", "data_dir": "data",
            "model": "p4cnn", "group": group, "input_size": size, "train_symmetry": regime, "seed": seed,
            "lr": 0.01, "width": None, "head": "coset", "backend": "native", "epochs": 50, "run_name": None,
            **settings, "exact": size == 28, **values, "val_acc": values.get("test_acc_upright"),
            "eq_error": 0.0 if size == 28 else 0.3, "eq_error/block1": 0.1 * seed, "trial_seconds": 100.0 + seed}


def planted(seeds: int = 30, rng_seed: int = 0) -> pd.DataFrame:
    """p4 exact at 28 and approximate at 27 and 29, plus z2 at 28 (flagged exact, far worse), two regimes."""
    rng = np.random.default_rng(rng_seed)
    rows, cell = [], 0
    for group, size in (("p4", 27), ("p4", 28), ("p4", 29), ("z2", 28)):
        for regime in REGIMES:
            for seed in range(seeds):
                if group == "z2":
                    values = {metric: 0.5 + rng.normal(0, NOISE) for metric in METRICS}
                else:
                    values = {metric: PLANTED[metric][size != 28] + rng.normal(0, NOISE) for metric in METRICS}
                rows.append(_row(len(rows), cell, group, size, regime, seed, values))
                cell += 1
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def results() -> pd.DataFrame:
    return planted()


@pytest.fixture(scope="module")
def verdicts(results) -> v.Verdicts:
    return v.verdict_table(results)


def test_planted_gaps_give_the_expected_verdicts(verdicts):
    table = verdicts.table
    assert verdicts.conditions == ["train_symmetry"]
    assert list(table["train_symmetry"]) == [regime for regime in sorted(REGIMES) for _ in METRICS]
    assert list(table["metric"]) == METRICS * 2
    assert list(table["label"]) == ["upright", "orbit", "mean over angles", "min over angles"] * 2
    expected = {"test_acc_upright": "approx wins", "test_acc_orbit": "exact wins",
                "test_acc_mean_angles": "tie", "test_acc_min_angles": "tie"}
    assert list(table["verdict"]) == [expected[metric] for metric in table["metric"]]
    for row in table.itertuples():
        gap = PLANTED[row.metric][1] - PLANTED[row.metric][0]
        assert row.ci_low < gap < row.ci_high, row
        assert row.ci_low < row.diff < row.ci_high
        assert row.diff == pytest.approx(gap, abs=4 * NOISE / math.sqrt(30))
    assert not verdicts.skipped


def test_z2_never_enters_the_comparison(verdicts):
    table = verdicts.table
    assert (table["exact_n"] == 30).all() and (table["approx_n"] == 60).all()  # z2 at 28 would double exact_n
    assert (table["exact_sizes"] == "28").all() and (table["approx_sizes"] == "27, 29").all()
    assert (table["exact_mean"] > 0.75).all()  # z2 sits at 0.5
    assert "group" not in table.columns  # only p4 is compared, so group does not vary
    assert any("z2" in note and "240" not in note and "60" in note for note in verdicts.notes)


def test_p_values_and_intervals_match_scipy(results, verdicts):
    compared = results[results["group"] == "p4"]
    for row in verdicts.table.itertuples():
        cell = compared[compared["train_symmetry"] == row.train_symmetry]
        exact = cell.loc[cell["exact"], row.metric].to_numpy()
        approx = cell.loc[~cell["exact"], row.metric].to_numpy()
        assert row.p_value == pytest.approx(stats.ttest_ind(approx, exact, equal_var=False).pvalue, rel=1e-9)
        assert (row.exact_mean, row.approx_mean) == pytest.approx((exact.mean(), approx.mean()))
        assert (row.exact_std, row.approx_std) == pytest.approx((exact.std(ddof=1), approx.std(ddof=1)))
        # the interval's ends are exactly the shifts that Welch's test rejects at 5 %, two-sided
        for end in (row.ci_low, row.ci_high):
            assert stats.ttest_ind(approx - end, exact, equal_var=False).pvalue == pytest.approx(0.05, rel=1e-6)
    assert np.allclose(verdicts.table["p_adjusted"], v.holm(verdicts.table["p_value"].to_numpy()))


def test_holm_on_a_hand_made_example():
    adjusted = v.holm([0.01, 0.04, 0.03, math.nan, 0.005])
    assert np.allclose(adjusted, [0.03, 0.06, 0.06, math.nan, 0.02], equal_nan=True)
    assert np.allclose(v.holm([0.4, 0.5]), [0.8, 0.8])
    assert np.allclose(v.holm([0.7, 0.9]), [1.0, 1.0])
    assert v.holm([]).shape == (0,)


def test_the_verdict_follows_the_adjusted_p_not_the_raw_one():
    base = np.array([0.90, 0.91, 0.92, 0.93])
    rows = []
    for size in (28, 29):
        for seed, value in enumerate(base):
            values = dict.fromkeys(METRICS, value)
            values["test_acc_upright"] = value + (0.025 if size == 29 else 0.0)
            rows.append(_row(len(rows), 0, "p4", size, "none", seed, values))
    table = v.verdict_table(pd.DataFrame(rows)).table
    upright = table.set_index("metric").loc["test_acc_upright"]
    assert 0.0125 < upright.p_value < 0.05  # significant alone ...
    assert upright.p_adjusted == pytest.approx(4 * upright.p_value) and upright.verdict == "tie"  # ... not of four
    assert (table["verdict"] == "tie").all()


def test_one_seed_per_arm_reports_means_only(results):
    one = results[results["seed"] == 0]
    verdicts = v.verdict_table(one)
    table = verdicts.table
    assert len(table) == 8 and (table["verdict"] == "n/a").all()
    assert table[["p_value", "p_adjusted", "ci_low", "ci_high", "exact_std"]].isna().all().all()
    assert (table["exact_n"] == 1).all() and (table["approx_n"] == 2).all()  # 27 and 29 pool
    row = table.iloc[0]
    cell = one[(one["group"] == "p4") & (one["train_symmetry"] == row.train_symmetry)]
    assert row.exact_mean == pytest.approx(cell.loc[cell["exact"], row.metric].item())
    assert row.approx_mean == pytest.approx(cell.loc[~cell["exact"], row.metric].mean())
    assert "one seed in the exact arm" in row.note

    single = v.verdict_table(one[one["input_size"] != 27])
    summary = v.summary_paragraph(single)
    assert "with one seed per arm there is no test; means only" in summary
    assert "none of the 8 comparisons could be tested" in summary
    assert "n/a" in v.to_markdown(single)


def test_zero_spread_in_both_arms_is_not_tested():
    rows = [_row(i, 0, "p4", size, "none", seed, dict.fromkeys(METRICS, 0.9 if size == 28 else 0.95))
            for i, (size, seed) in enumerate((s, k) for s in (28, 29) for k in range(3))]
    table = v.verdict_table(pd.DataFrame(rows)).table
    assert (table["verdict"] == "n/a").all() and table["p_value"].isna().all()
    assert table["diff"].to_numpy() == pytest.approx([0.05] * 4)
    assert table["note"].str.contains("neither arm varies").all()


def test_failed_and_running_trials_are_ignored(results, verdicts):
    junk = [_row(90000 + i, 0, "p4", size, "none", 99, dict.fromkeys(METRICS, 0.0), status=status)
            for i, (size, status) in enumerate([(28, "running"), (29, "running"), (28, "failed"), (27, "stopped"),
                                                (29, "pending")])]
    junk[2].update(dict.fromkeys(METRICS, None))
    noisy = pd.concat([results, pd.DataFrame(junk)], ignore_index=True).sample(frac=1, random_state=0)
    again = v.verdict_table(noisy)
    pd.testing.assert_frame_equal(again.table, verdicts.table)
    assert any("5 trials that did not finish" in note and "2 running" in note for note in again.notes)


def test_condition_columns_pick_the_varying_settings():
    rows = []
    for regime in ("none", "c4"):
        for lr in (0.01, 0.001):
            for size in (28, 29):
                for seed in range(2):  # one grid cell per (regime, lr, size, seed)
                    rows.append(_row(len(rows), len(rows), "p4", size, regime, seed, dict.fromkeys(METRICS, 0.9),
                                     lr=lr))
    frame = pd.DataFrame(rows)
    assert v.condition_columns(frame) == ["train_symmetry", "lr"]
    assert v.condition_columns(frame, ignore=["lr"]) == ["train_symmetry"]
    verdicts = v.verdict_table(frame)
    assert len(verdicts.table) == 4 * 4
    assert list(verdicts.table["condition"].drop_duplicates()) == [
        "train_symmetry=c4, lr=0.001", "train_symmetry=c4, lr=0.01", "train_symmetry=none, lr=0.001",
        "train_symmetry=none, lr=0.01"]

    with_groups = pd.concat([frame.assign(group="p4m"), frame.assign(cell=frame["cell"] + 100),
                             frame.assign(group="z2", cell=frame["cell"] + 200)], ignore_index=True)
    assert v.condition_columns(with_groups) == ["group", "train_symmetry", "lr"]
    assert v.condition_columns(frame.assign(group=["z2", "p4"] * (len(frame) // 2))) == ["train_symmetry", "lr"]
    # the same cell ids in two sweeps' tables would read as a search over group; without cell ids the rule is off
    assert v.condition_columns(with_groups.assign(cell=list(frame["cell"]) * 3)) == ["train_symmetry", "lr"]
    assert v.condition_columns(with_groups.drop(columns="cell")) == ["group", "train_symmetry", "lr"]
    for columns in (v.condition_columns(with_groups), v.condition_columns(with_groups, exclude_groups=())):
        assert not {"input_size", "seed", "exact", "trial_id", "cell", "eq_error/block1", "trial_seconds"} & set(
            columns)


def test_searched_hyperparameters_are_pooled_not_compared():
    rng = np.random.default_rng(1)
    rows = [_row(i, size, "p4", size, "none", 0, dict.fromkeys(METRICS, 0.9 + 0.01 * rng.normal()),
                 lr=float(rng.uniform(1e-3, 1e-2))) for i, size in enumerate([28, 29] * 4)]
    verdicts = v.verdict_table(pd.DataFrame(rows))
    assert verdicts.conditions == [] and set(verdicts.table["condition"]) == {"all trials"}
    assert (verdicts.table["exact_n"] == 4).all()
    assert any(note.startswith("lr varies inside grid cells") for note in verdicts.notes)


def test_a_condition_with_one_arm_only_is_skipped(results):
    uniform = results[(results["input_size"] == 28) & (results["train_symmetry"] == "none")]
    uniform = uniform.assign(train_symmetry="uniform", cell=uniform["cell"] + 10_000)
    verdicts = v.verdict_table(pd.concat([results, uniform], ignore_index=True))
    assert set(verdicts.table["train_symmetry"]) == set(REGIMES)
    assert verdicts.skipped == ["train_symmetry=uniform: only exact trials finished (30); nothing to compare."]
    assert "train_symmetry=uniform: only exact" in v.summary_paragraph(verdicts)


def test_summary_names_winners_gaps_and_ties(verdicts):
    summary = v.summary_paragraph(verdicts)
    assert "(8 Welch t-tests" in summary and "2 approx wins, 2 exact wins, 4 ties." in summary
    assert "Under train_symmetry=none, exact at 28 (30 seeds) vs approximate at 27, 29 (60 seeds): " in summary
    assert "the approximate network is better on upright by 1.0 points (95 % CI" in summary
    assert "the exact network is better on orbit by 20.0 points (95 % CI" in summary
    assert "no difference beyond seed noise on mean over angles" in summary
    assert "z2" in summary


def test_markdown_table(results, verdicts):
    lines = v.to_markdown(verdicts).splitlines()
    assert len(lines) == 2 + len(verdicts.table)
    assert lines[0] == ("| train_symmetry | metric | exact mean ± std (n) | approx mean ± std (n) | "
                        "diff [95% CI] (points) | p (adj.) | verdict |")
    assert all(line.count(" | ") == lines[0].count(" | ") for line in lines)
    first = {key: value * 100 for key, value in verdicts.table.iloc[0].items() if key.endswith(
        ("_mean", "_std", "diff", "ci_low", "ci_high"))}
    assert lines[2] == (f"| gaussian(45,20) | upright | {first['exact_mean']:.2f} ± {first['exact_std']:.2f} (30) | "
                        f"{first['approx_mean']:.2f} ± {first['approx_std']:.2f} (60) | "
                        f"{first['diff']:+.2f} [{first['ci_low']:+.2f}, {first['ci_high']:+.2f}] | <1e-4 | "
                        "approx wins |")
    one = v.to_markdown(v.verdict_table(results[results["seed"] == 0])).splitlines()
    assert one[2].endswith("| – | n/a |") and " ± " not in one[2].split(" | ")[2]


def test_the_module_imports_no_training_code():
    tree = ast.parse(Path(v.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported <= {"__future__", "math", "collections", "dataclasses", "types", "typing", "numpy", "pandas",
                        "scipy", "equisweep"}
    from_equisweep = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                      and node.module.startswith("equisweep")}
    # train: the metric names only (its package imports nothing); results: pandas and pyarrow
    assert from_equisweep == {"equisweep.pipeline.train", "equisweep.pipeline.sweep.results"}
