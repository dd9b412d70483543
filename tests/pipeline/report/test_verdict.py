"""The exact-vs-approximate verdicts on synthetic results tables with planted gaps (no Ray, no training)."""

import ast
import io
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from equisweep.pipeline.report import arms
from equisweep.pipeline.report import comparison as cmp
from equisweep.pipeline.report import figures as fg
from equisweep.pipeline.report import stats as st
from equisweep.pipeline.report import text as tx
from equisweep.pipeline.report import verdict as v
from tests.helpers import run_python

METRICS = list(v.REPORT_METRICS)
REGIMES = ("none", "gaussian(45,20)")
# per metric: (exact mean, approx mean) as fractions; noise std 0.3 points in every arm
PLANTED = {"test_acc_upright": (0.970, 0.980), "test_acc_orbit": (0.950, 0.750),
           "test_acc_mean_angles": (0.900, 0.900), "test_acc_min_angles": (0.800, 0.800)}
NOISE = 0.003


def _row(trial: int, cell: int, group: str, size: int, regime: str, seed: int, values: dict[str, float],
         status: str = "finished", exact: bool | None = None, **settings) -> dict:
    return {"trial_id": f"t{trial:05d}", "trial_name": f"run_trial_t{trial:05d}", "cell": cell, "status": status,
            "error": "boom" if status == "failed" else None, "attempts": 1, "dataset": "mnist", "data_dir": "data",
            "model": "p4cnn", "group": group, "input_size": size, "train_symmetry": regime, "seed": seed,
            "lr": 0.01, "width": None, "head": "coset", "backend": "native", "epochs": 50, "run_name": None,
            **settings, "exact": (None if group == "z2" else size == 28) if exact is None else exact, **values,
            "val_acc": values.get("test_acc_upright"),
            "eq_error": 0.0 if size == 28 else 0.3, "eq_error/block1": 0.1 * seed, "trial_seconds": 100.0 + seed}


def planted(seeds: int = 30, rng_seed: int = 0) -> pd.DataFrame:
    """p4 exact at 28 and approximate at 27 and 29, plus z2 at 28 (exact not applicable, far worse), two regimes."""
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


ARMS = ("p4 27 approx", "p4 29 approx", "plain CNN 28")


def test_planted_gaps_give_the_expected_verdicts(verdicts):
    table = verdicts.table
    assert verdicts.conditions == ["train_symmetry"]
    # regimes in their natural order, then each approximate arm and the plain CNN, then the metrics
    assert list(table["train_symmetry"]) == [regime for regime in REGIMES for _ in ARMS for _ in METRICS]
    assert list(table["arm"]) == [arm for _ in REGIMES for arm in ARMS for _ in METRICS]
    assert list(table["metric"]) == METRICS * 6
    assert list(table["label"]) == ["upright", "orbit", "mean over angles", "min over angles"] * 6
    compared = table[table["arm"] != "plain CNN 28"]
    assert (compared["exact_arm"] == "p4 28 exact").all() and set(compared["input_size"]) == {27, 29}
    expected = {"test_acc_upright": "approx wins", "test_acc_orbit": "exact wins",
                "test_acc_mean_angles": "inconclusive", "test_acc_min_angles": "inconclusive"}
    assert list(compared["verdict"]) == [expected[metric] for metric in compared["metric"]]
    for row in compared.itertuples():
        gap = PLANTED[row.metric][1] - PLANTED[row.metric][0]
        assert row.ci_low < gap < row.ci_high, row
        assert row.ci_low < row.diff < row.ci_high
        assert row.diff == pytest.approx(gap, abs=4 * NOISE / math.sqrt(15))
    assert not verdicts.skipped


def test_each_approximate_size_is_its_own_arm_against_the_nearest_exact_size():
    rng = np.random.default_rng(3)
    rows = []
    for size, exact, upright in ((27, False, 0.80), (28, True, 0.90), (31, False, 0.95), (32, True, 0.70)):
        for seed in range(4):
            values = dict.fromkeys(METRICS, 0.9 + rng.normal(0, NOISE)) | {"test_acc_upright": upright
                                                                           + rng.normal(0, NOISE)}
            rows.append(_row(len(rows), len(rows), "p4", size, "none", seed, values, exact=exact))
    table = v.verdict_table(pd.DataFrame(rows)).table.set_index(["arm", "metric"])
    assert list(table.index.get_level_values("arm").unique()) == ["p4 27 approx", "p4 31 approx"]
    assert table.loc[("p4 27 approx", "test_acc_upright"), "exact_arm"] == "p4 28 exact"
    assert table.loc[("p4 31 approx", "test_acc_upright"), "exact_arm"] == "p4 32 exact"  # nearer than 28
    assert table.loc[("p4 27 approx", "test_acc_upright"), "diff"] == pytest.approx(-0.10, abs=0.01)
    assert table.loc[("p4 31 approx", "test_acc_upright"), "diff"] == pytest.approx(0.25, abs=0.01)
    assert (table["exact_n"] == 4).all() and (table["arm_n"] == 4).all()


def test_the_plain_cnn_is_a_reference_row_never_tested(results, verdicts):
    table = verdicts.table
    plain = table[table["arm"] == "plain CNN 28"]
    assert len(plain) == 2 * len(METRICS) and (plain["verdict"] == "reference").all()
    assert plain["exact"].isna().all() and (plain["exact_arm"] == "").all()
    assert plain[["diff", "p_value", "p_adjusted", "detectable", "seeds_needed", "exact_mean"]].isna().all().all()
    z2 = results[results["group"] == "z2"]
    for row in plain.itertuples():
        values = z2.loc[z2["train_symmetry"] == row.train_symmetry, row.metric]
        assert (row.arm_mean, row.arm_std, row.arm_n) == pytest.approx((values.mean(), values.std(ddof=1), 30))
    tested = table[table["p_value"].notna()]
    assert len(tested) == 16 and np.allclose(tested["p_adjusted"], st.holm(tested["p_value"].to_numpy()))
    assert (table.loc[table["exact_arm"] != "", "exact_mean"] > 0.75).all()  # z2 sits at 0.5, never the exact arm
    assert "group" not in table.columns  # only p4 is compared, so group does not vary
    assert any("z2" in note and "reference rows" in note and "(60)" in note for note in verdicts.notes)
    csv = pd.read_csv(io.StringIO(table.to_csv(index=False)), keep_default_na=False)
    assert set(csv.loc[csv["arm"] == "plain CNN 28", "exact"]) == {""}  # not applicable: empty, not True
    assert set(csv.loc[csv["arm"] != "plain CNN 28", "exact"]) == {"False"}


def test_exact_as_an_object_column_and_older_tables_with_z2_exact_give_the_same_verdicts(results, verdicts):
    objects = results.assign(exact=results["exact"].astype(object))
    assert objects["exact"].dtype == object and objects["exact"].isna().sum() == 60
    older = results.assign(exact=[True if group == "z2" else exact for group, exact in
                                  zip(results["group"], results["exact"])])
    assert older["exact"].dtype == bool
    for table in (objects, older):
        pd.testing.assert_frame_equal(v.verdict_table(table).table, verdicts.table)
    assert arms.without_trivial_exactness(older)["exact"].tolist() == objects["exact"].tolist()


def test_p_values_and_intervals_match_scipy(results, verdicts):
    compared = results[results["group"] == "p4"]
    for row in verdicts.table[verdicts.table["exact_arm"] != ""].itertuples():
        cell = compared[compared["train_symmetry"] == row.train_symmetry]
        exact = cell.loc[cell["input_size"] == 28, row.metric].to_numpy()
        approx = cell.loc[cell["input_size"] == row.input_size, row.metric].to_numpy()
        assert row.p_value == pytest.approx(stats.ttest_ind(approx, exact, equal_var=False).pvalue, rel=1e-9)
        assert (row.exact_mean, row.arm_mean) == pytest.approx((exact.mean(), approx.mean()))
        assert (row.exact_std, row.arm_std) == pytest.approx((exact.std(ddof=1), approx.std(ddof=1)))
        # the interval's ends are exactly the shifts that Welch's test rejects at 5 %, two-sided
        for end in (row.ci_low, row.ci_high):
            assert stats.ttest_ind(approx - end, exact, equal_var=False).pvalue == pytest.approx(0.05, rel=1e-6)
    assert np.allclose(verdicts.table["p_adjusted"], st.holm(verdicts.table["p_value"].to_numpy()), equal_nan=True)


def test_power_columns_at_holms_strictest_level(results, verdicts):
    table = verdicts.table
    tested = table[table["p_value"].notna()]
    assert verdicts.level == pytest.approx(0.05 / 16)
    for row in tested.itertuples():
        pooled = math.sqrt((29 * row.exact_std**2 + 29 * row.arm_std**2) / 58)
        assert row.detectable == pytest.approx(st.detectable_difference(30, 30, pooled, 0.05 / 16))
        assert row.seeds_needed == st.seeds_needed(row.diff, pooled, 0.05 / 16)
        # with 30 seeds and 0.3 points of noise, about a third of a point is detectable
        assert 0.002 < row.detectable < 0.004
    wins = tested[tested["verdict"] != "inconclusive"]
    assert (wins["seeds_needed"] <= 30).all()  # what was detected needed no more seeds than the sweep had
    assert (table.loc[table["p_value"].isna(), ["detectable", "seeds_needed"]].isna()).all().all()


@pytest.mark.parametrize(("seeds", "level"), [(2, 0.05), (5, 0.05 / 16)])
def test_detectable_difference_has_the_stated_power_under_welchs_test_in_simulation(seeds, level):
    detectable = st.detectable_difference(seeds, seeds, 1.0, level)
    assert st.power(detectable, seeds, seeds, 1.0, level) == pytest.approx(0.8)
    rng = np.random.default_rng(seeds)
    exact = rng.normal(0.0, 1.0, (40_000, seeds))
    approx = rng.normal(detectable, 1.0, (40_000, seeds))
    welch = stats.ttest_ind(approx, exact, axis=1, equal_var=False).pvalue < level
    assert welch.mean() == pytest.approx(0.8, abs=0.01)
    # the pooled t-test's power would promise more than Welch's test delivers with few seeds
    assert (stats.ttest_ind(approx, exact, axis=1).pvalue < level).mean() > 0.82


def test_seeds_needed_is_the_fewest_that_reach_the_power():
    needed = st.seeds_needed(0.5, 1.0, 0.05)
    assert st.power(0.5, int(needed), int(needed), 1.0, 0.05) >= 0.8 > st.power(0.5, int(needed) - 1,
                                                                               int(needed) - 1, 1.0, 0.05)
    assert needed == 64  # the textbook figure for half a standard deviation at 5 % and 80 % power
    assert st.seeds_needed(-0.5, 1.0, 0.05) == needed
    assert st.seeds_needed(0.0, 1.0, 0.05) == math.inf  # no number of seeds detects no difference
    assert math.isnan(st.seeds_needed(0.5, math.nan, 0.05)) and math.isnan(st.detectable_difference(1, 5, 1.0, 0.05))


def test_the_summary_says_how_many_more_seeds_the_sweep_needs_for_differences_worth_resolving(results):
    verdicts = v.verdict_table(results[results["seed"] < 4])
    open_rows = (verdicts.table["verdict"] == "inconclusive") & verdicts.table["p_value"].notna()
    # the planted inconclusive gaps are 0 plus noise: thousands of seeds would resolve what matters to no one
    assert (verdicts.table.loc[open_rows, "diff"].abs() < 0.01).all()
    assert tx.more_seeds(verdicts)[::2] == (0.0, int(open_rows.sum()))
    assert ("Every inconclusive difference observed here is below 1 point: no more seeds are worth spending on them."
            in tx.summary_paragraph(verdicts))

    sized = verdicts.table.copy()
    on_min = open_rows & (sized["metric"] == "test_acc_min_angles")
    sized.loc[on_min, "diff"] = np.linspace(0.012, 0.03, int(on_min.sum()))
    sized["seeds_needed"] = [st.seeds_needed(d, 0.02, verdicts.level) for d in sized["diff"]]
    sized_verdicts = v.Verdicts(sized, verdicts.conditions, alpha=0.05, level=verdicts.level)
    more, worst, smaller = tx.more_seeds(sized_verdicts)
    assert more == (sized.loc[on_min, "seeds_needed"] - 4).max() > 0
    assert smaller == int((open_rows & ~on_min).sum()) > 0
    row = next(worst.itertuples())
    assert row.diff == pytest.approx(0.012)  # the smallest sized difference needs the most seeds
    assert (f"the sweep needs {more:.0f} more seeds per arm: {row.seeds_needed:.0f} per arm for {row.arm} vs "
            f"p4 28 exact on min over angles under {row.condition} (+1.20 points) ({smaller} smaller "
            "inconclusive differences, below 1 point, left out).") in tx.summary_paragraph(sized_verdicts)


def test_holm_on_a_hand_made_example():
    adjusted = st.holm([0.01, 0.04, 0.03, math.nan, 0.005])
    assert np.allclose(adjusted, [0.03, 0.06, 0.06, math.nan, 0.02], equal_nan=True)
    assert np.allclose(st.holm([0.4, 0.5]), [0.8, 0.8])
    assert np.allclose(st.holm([0.7, 0.9]), [1.0, 1.0])
    assert st.holm([]).shape == (0,)


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
    assert upright.p_adjusted == pytest.approx(4 * upright.p_value)  # ... not of four
    assert upright.verdict == "inconclusive" and (table["verdict"] == "inconclusive").all()


def test_one_seed_per_arm_reports_means_only(results):
    one = results[results["seed"] == 0]
    verdicts = v.verdict_table(one)
    table = verdicts.table
    compared = table[table["exact_arm"] != ""]
    assert len(compared) == 16 and (compared["verdict"] == "inconclusive").all()
    assert compared[["p_value", "p_adjusted", "ci_low", "ci_high", "exact_std", "detectable", "seeds_needed"]
                    ].isna().all().all()
    assert (compared["exact_n"] == 1).all() and (compared["arm_n"] == 1).all()  # 27 and 29: one arm each
    row = compared.iloc[0]
    cell = one[(one["group"] == "p4") & (one["train_symmetry"] == row.train_symmetry)]
    assert row.exact_mean == pytest.approx(cell.loc[cell["input_size"] == 28, row.metric].item())
    assert row.arm_mean == pytest.approx(cell.loc[cell["input_size"] == row.input_size, row.metric].item())
    assert row.note == "with one seed per arm there is no test; means only"
    assert math.isnan(verdicts.level)

    summary = tx.summary_paragraph(verdicts)
    assert "with one seed per arm there is no test; means only" in summary
    assert "none of the 16 comparisons could be tested, so all are inconclusive" in summary
    assert "inconclusive" in tx.to_markdown(verdicts) and "more seeds" not in summary
    uneven = v.verdict_table(pd.concat([one, results[(results["seed"] == 1) & (results["input_size"] == 29)]]))
    assert "with one seed in the exact arm its spread is unknown, so there is no test; means only" in set(
        uneven.table["note"])


def test_zero_spread_in_both_arms_is_not_tested():
    rows = [_row(i, 0, "p4", size, "none", seed, dict.fromkeys(METRICS, 0.9 if size == 28 else 0.95))
            for i, (size, seed) in enumerate((s, k) for s in (28, 29) for k in range(3))]
    verdicts = v.verdict_table(pd.DataFrame(rows))
    table = verdicts.table
    assert (table["verdict"] == "inconclusive").all() and table["p_value"].isna().all()
    assert table["diff"].to_numpy() == pytest.approx([0.05] * 4)
    assert table["note"].str.contains("neither arm varies").all()
    assert table["note"].str.endswith("(at best 0.1): means only, too few seeds").all()
    assert "p4 29 approx is not tested (means only) against p4 28 exact" in tx.summary_paragraph(verdicts)
    # float32 rounding is not seed noise: an orbit mean of 0.5 over seeds that reads 0.49999997 in one of them
    rounded = [{**row, "test_acc_orbit": np.float32(0.5) - np.float32(3e-8) * (row["seed"] == 1)} for row in rows]
    orbit = v.verdict_table(pd.DataFrame(rounded)).table.set_index("metric").loc["test_acc_orbit"]
    assert orbit["exact_std"] == orbit["arm_std"] == 0 and math.isnan(orbit["p_value"])


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
        "train_symmetry=none, lr=0.001", "train_symmetry=none, lr=0.01", "train_symmetry=c4, lr=0.001",
        "train_symmetry=c4, lr=0.01"]

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
    assert "train_symmetry=uniform: only exact" in tx.summary_paragraph(verdicts)


def test_summary_names_the_arms_winners_gaps_and_inconclusive_rows(verdicts):
    summary = tx.summary_paragraph(verdicts)
    assert "(16 Welch t-tests" in summary and "4 approx wins, 4 exact wins, 8 inconclusive." in summary
    assert "Under train_symmetry=none, p4 27 approx (30 seeds) vs p4 28 exact (30 seeds, nearest exact size): " \
        in summary
    assert ("Under train_symmetry=none: p4 27 approx trades (wins on upright, loses on orbit) and p4 29 approx trades "
            "(wins on upright, loses on orbit) against p4 28 exact (nearest exact size).") in summary
    assert "the approximate network is better on upright by 1.0 points (95 % CI" in summary
    assert "the exact network is better on orbit by 20.0 points (95 % CI" in summary
    assert "no difference is shown on mean over angles" in summary and "these seeds detect 0.3 points" in summary
    assert "tie" not in summary
    assert "Reference, not tested: the plain CNN 28 (30 seeds) reaches 50.0 points upright" in summary


def test_markdown_table(results, verdicts):
    lines = tx.to_markdown(verdicts).splitlines()
    assert len(lines) == 2 + len(verdicts.table)
    assert lines[0] == ("| train_symmetry | metric | arm | mean ± std (n) | exact arm | exact mean ± std (n) | "
                        "diff [95% CI] (points) | p (adj.) | detectable (points) | seeds/arm for diff | verdict |")
    assert lines[1] == "| --- | --- | --- | ---: | --- | " + "---: | " * 5 + "--- |"
    assert all(line.count(" | ") == lines[0].count(" | ") for line in lines)
    first = {key: value * 100 for key, value in verdicts.table.iloc[0].items() if key.endswith(
        ("_mean", "_std", "diff", "ci_low", "ci_high", "detectable"))}
    assert lines[2] == (f"| none | upright | p4 27 approx | {first['arm_mean']:.2f} ± {first['arm_std']:.2f} (30) | "
                        f"p4 28 exact (nearest exact size) | {first['exact_mean']:.2f} ± {first['exact_std']:.2f} "
                        "(30) | "
                        f"{first['diff']:+.2f} [{first['ci_low']:+.2f}, {first['ci_high']:+.2f}] | <1e-4 | "
                        f"{first['detectable']:.2f} | {verdicts.table.iloc[0].seeds_needed:.0f} | approx wins |")
    reference = lines[2 + 8]
    assert reference.startswith("| none | upright | plain CNN 28 | ") and reference.endswith(
        " |  |  |  |  |  |  | reference |")
    one = tx.to_markdown(v.verdict_table(results[results["seed"] == 0])).splitlines()
    assert one[2].endswith("| – | – | – | inconclusive |") and " ± " not in one[2].split(" | ")[3]


def test_the_verdict_and_its_statistics_import_no_training_code():
    for module in (v, st, arms, cmp):
        tree = ast.parse(Path(module.__file__).read_text())
        imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names}
        imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert imported <= {"__future__", "itertools", "math", "collections", "dataclasses", "types", "typing",
                            "numpy", "pandas", "scipy", "equisweep"}, module.__name__
    # what a fresh interpreter loads for the verdict: no torch, no Lightning, no Ray
    loaded = run_python("import sys; import equisweep.pipeline.report.verdict, equisweep.pipeline.report.text; "
                        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'lightning', 'ray')))")
    assert loaded.returncode == 0 and loaded.stdout.strip() == "[]", loaded.stderr


def relaxed_arms(seeds: int = 8, rng_seed: int = 5) -> pd.DataFrame:
    """p4 exact at 28 (stride) and 29 (adaptive), approximate at 29, rpp and relaxed at 28, z2 at 28; upright only.
    Planted upright gaps: rpp +5 points over exact 28, relaxed 0, approx 29 -3 points under adaptive 29 (which
    itself sits 2 points under exact 28, so the nearest-size rule would plant -1)."""
    rng = np.random.default_rng(rng_seed)
    arms = [  # (group, size, exact, relaxation, subsampling, upright, eq_error)
        ("p4", 28, True, "none", "stride", 0.90, 0.0), ("p4", 29, True, "none", "adaptive", 0.88, 0.0),
        ("p4", 29, False, "none", "stride", 0.85, 0.3), ("p4", 28, True, "rpp", "stride", 0.95, 0.2),
        ("p4", 28, True, "relaxed", "stride", 0.90, 0.05), ("z2", 28, None, "none", "stride", 0.6, 0.5)]
    rows = []
    for cell, (group, size, exact, relaxation, subsampling, upright, error) in enumerate(arms):
        for seed in range(seeds):
            values = dict.fromkeys(METRICS, 0.9 + rng.normal(0, NOISE)) | {
                "test_acc_upright": upright + rng.normal(0, NOISE)}
            row = _row(len(rows), cell, group, size, "none", seed, values, exact=exact, relaxation=relaxation,
                       subsampling=subsampling)
            rows.append(row | {"eq_error": error + 0.01 * seed, "relaxation/block1": 0.1 * (relaxation != "none")})
    return pd.DataFrame(rows)


def test_each_arm_is_compared_with_the_same_size_reference_else_the_nearest_and_relaxed_arms_name_their_wins():
    verdicts = v.verdict_table(relaxed_arms())
    table = verdicts.table[verdicts.table["reference"] != v.PAPERS_PAIR].set_index(["arm", "metric"])
    assert verdicts.conditions == []  # relaxation and subsampling define arms, never conditions
    assert list(table.index.get_level_values("arm").unique()) == [
        "p4 29 approx", "p4 28 relaxed", "p4 28 rpp", "plain CNN 28"]
    upright = table.xs("test_acc_upright", level="metric")
    assert upright.loc["p4 29 approx", ["exact_arm", "reference"]].tolist() == ["p4 29 adaptive exact", "same size"]
    assert upright.loc["p4 29 approx", "diff"] == pytest.approx(-0.03, abs=0.01)
    for arm in ("p4 28 relaxed", "p4 28 rpp"):
        assert upright.loc[arm, ["exact_arm", "reference"]].tolist() == ["p4 28 exact", "same size"]
    assert upright.loc["p4 28 rpp", "diff"] == pytest.approx(0.05, abs=0.01)
    assert upright["verdict"].to_dict() == {"p4 29 approx": "exact wins", "p4 28 relaxed": "inconclusive",
                                            "p4 28 rpp": "rpp wins", "plain CNN 28": "reference"}
    assert upright.loc["p4 28 rpp", ["relaxation", "subsampling"]].tolist() == ["rpp", "stride"]
    assert upright.loc["p4 28 rpp", ["arm_eq_error", "exact_eq_error"]].tolist() == pytest.approx([0.235, 0.035])
    summary = tx.summary_paragraph(verdicts)
    assert "Each arm minus exact accuracy" in summary and "0 approx wins, 0 relaxed wins, 1 rpp wins, 2 exact wins" \
        in summary  # the second exact win: p4 29 approx against the paper's pair
    assert ("Over all trials: p4 29 approx loses (upright) against p4 29 adaptive exact (same size); p4 29 approx "
            "loses (upright) against p4 28 exact (paper's pair); p4 28 relaxed ties (inconclusive on every metric) "
            "and p4 28 rpp wins (upright) against p4 28 exact (same size).") in summary
    assert "the rpp network is better on upright by 5.0 points" in summary


def test_an_approximate_arm_is_compared_with_its_same_size_reference_and_with_the_papers_pair():
    verdicts = v.verdict_table(relaxed_arms())
    table = verdicts.table
    approx = table[table["arm"] == "p4 29 approx"]
    # a row per reference and metric, the same size first: exact 29 (adaptive), then exact 28 as the paper pairs them
    assert list(zip(approx["exact_arm"], approx["reference"])) == [
        ("p4 29 adaptive exact", "same size")] * 4 + [("p4 28 exact", "paper's pair")] * 4
    upright = approx[approx["metric"] == "test_acc_upright"].set_index("reference")
    assert upright.loc["same size", "diff"] == pytest.approx(-0.03, abs=0.01)
    assert upright.loc["paper's pair", "diff"] == pytest.approx(-0.05, abs=0.01)
    exact28 = relaxed_arms().query("input_size == 28 and relaxation == 'none' and group == 'p4'")["test_acc_upright"]
    assert upright.loc["paper's pair", "exact_mean"] == pytest.approx(exact28.mean())
    # relaxed arms have no paper's pair: only their same-size reference
    assert set(table.loc[table["relaxation"] != "none", "reference"]) == {"same size"}
    assert verdicts.level == pytest.approx(0.05 / table["p_value"].notna().sum()) and len(table) == 5 * 4
    shown = tx.display_table(verdicts)
    assert list(dict.fromkeys(shown.loc[shown["arm"] == "p4 29 approx", "exact arm"])) == [
        "p4 29 adaptive exact (same size)", "p4 28 exact (paper's pair)"]
    summary = tx.summary_paragraph(verdicts)
    assert "p4 29 approx (8 seeds) vs p4 29 adaptive exact (8 seeds, same size): the exact network is better" in summary
    assert "p4 29 approx (8 seeds) vs p4 28 exact (8 seeds, paper's pair): the exact network is better" in summary
    assert "nearest other size (paper's pair, as the paper compares them)" in tx.verdict_intro(verdicts, "mnist")
    # the gap map gives each reference its own row; the relaxation-gain plot one point per arm
    ticks = [t.get_text() for t in fg.gap_map(table, conditions=verdicts.conditions).axes[0].get_yticklabels()]
    assert ticks == ["p4 29 approx, vs p4 29 adaptive exact", "p4 29 approx, vs p4 28 exact",
                     "p4 28 relaxed, vs p4 28 exact", "p4 28 rpp, vs p4 28 exact"]
    gains = fg.relaxation_gain(table).axes[0]
    assert [bars.get_label() for bars in gains.containers] == [
        f"{arm} · all trials" for arm in ("p4 29 approx", "p4 28 relaxed", "p4 28 rpp")]


def _two_arms(exact: dict[str, list[float]], approx: dict[str, list[float]]) -> pd.DataFrame:
    """p4 exact at 28 and approximate at 29 with the given values per metric, one trial per seed (others 0.9)."""
    rows = []
    for size, values in ((28, exact), (29, approx)):
        seeds = len(next(iter(values.values())))
        for seed in range(seeds):
            metrics = dict.fromkeys(METRICS, 0.9 + 0.01 * seed) | {k: vals[seed] for k, vals in values.items()}
            rows.append(_row(len(rows), len(rows), "p4", size, "none", seed, metrics))
    return pd.DataFrame(rows)


def test_intervals_stay_within_100_points_and_too_few_seeds_say_so():
    # two seeds a side: Welch's interval of this -77-point gap runs to about -265 points
    two = v.verdict_table(_two_arms({"test_acc_upright": [0.95, 0.99]}, {"test_acc_upright": [0.05, 0.35]}))
    upright = two.table.set_index("metric").loc["test_acc_upright"]
    low, high, _ = st.welch(np.array([0.95, 0.99]), np.array([0.05, 0.35]), 0.95)
    assert low < -2.5 and (upright.ci_low, upright.ci_high) == (-1.0, pytest.approx(min(high, 1.0)))
    assert upright.note == "with 2 seeds in an arm the t-interval is too wide to mean anything"
    pooled = st.pooled_std(2, upright.exact_std, 2, upright.arm_std)
    assert st.detectable_difference(2, 2, pooled, two.level) > 1 and math.isnan(upright.detectable)
    needed = upright.seeds_to_detect  # the fewest seeds per arm that detect a 100-point difference with 80 % power
    assert needed == st.seeds_needed(1.0, pooled, two.level) and needed > 2
    assert st.detectable_difference(needed, needed, pooled, two.level) <= 1 < st.detectable_difference(
        needed - 1, needed - 1, pooled, two.level)
    shown = tx.display_table(two).set_index("metric").loc["upright"]
    assert shown["diff [95% CI] (points)"] == f"{upright['diff'] * 100:+.2f} (too few seeds for an interval)"
    assert shown["detectable (points)"] == f"more seeds needed (≥ {needed:.0f})"
    summary = tx.summary_paragraph(two)
    assert ("upright (-77.0 points, no interval: 2 seeds in an arm are too few for one; these seeds detect no "
            f"difference within 100 points, {needed:.0f} seeds per arm would)") in summary
    # three seeds: the interval means something, but not beyond what a difference of accuracies can be
    three = v.verdict_table(_two_arms({"test_acc_upright": [0.95, 0.97, 0.99]},
                                      {"test_acc_upright": [0.05, 0.5, 0.95]})).table.iloc[0]
    assert three.ci_low == -1.0 and -1.0 < three.ci_high < 1.0 and three.note == ""
    for table in (two, v.verdict_table(relaxed_arms())):
        intervals = table.table[["ci_low", "ci_high"]].to_numpy(float)
        assert (np.abs(intervals[~np.isnan(intervals)]) <= 1).all()
        assert not (table.table["detectable"] > 1).any()


@pytest.mark.parametrize("seeds", [2, 5])
def test_an_arm_without_spread_gets_the_permutation_test_once_the_seeds_can_reach_alpha(seeds):
    # the exact net at chance on every seed (no spread), the approximate one learns (some spread)
    exact = {metric: [0.5] * seeds for metric in METRICS}
    approx = {metric: [0.95 + 0.01 * seed for seed in range(seeds)] for metric in METRICS}
    verdicts = v.verdict_table(_two_arms(exact, approx))
    table = verdicts.table
    assert (table["exact_std"] == 0).all() and (table["arm_std"] > 0).all()
    assert table["ci_low"].isna().all() and table["detectable"].isna().all()
    if seeds == 2:  # at best p = 1/3 over 2 + 2 seeds: Welch's 1-df test on one arm's spread is no answer either
        assert table["p_value"].isna().all() and (table["verdict"] == "inconclusive").all()
        assert table["note"].str.startswith("an arm does not vary across seeds and 2 + 2 seeds are too few").all()
        assert "means only, too few seeds" in tx.summary_paragraph(verdicts)
    else:
        p = st.permutation_test([0.5] * seeds, approx["test_acc_upright"])
        assert p == pytest.approx(2 / math.comb(2 * seeds, seeds))  # only the observed split and its mirror
        assert table["p_value"].to_numpy() == pytest.approx([p] * 4) and (table["note"] == cmp.PERMUTED).all()
        assert (table["verdict"] == "approx wins").all()  # Holm over 4 rows: 4 * 2/252 < 0.05


def test_a_metric_neither_arm_has_is_never_compared():
    results = planted(seeds=4)
    results["test_acc_orbit"] = np.nan  # undefined for these data (no transformed label), in every trial
    verdicts = v.verdict_table(results)
    table = verdicts.table
    orbit = table[(table["metric"] == "test_acc_orbit") & (table["verdict"] != "reference")]
    assert len(orbit) == 4 and (orbit["verdict"] == "n/a").all()
    assert orbit[["p_value", "p_adjusted", "diff", "ci_low", "detectable", "seeds_needed"]].isna().all().all()
    assert verdicts.level == pytest.approx(0.05 / 12)  # three metrics x two arms x two regimes tested, orbit not
    shown = tx.display_table(verdicts)
    row = shown[(shown["metric"] == "orbit") & (shown["verdict"] != "reference")].iloc[0]
    assert (row["mean ± std (n)"], row["exact mean ± std (n)"], row["diff [95% CI] (points)"], row["verdict"]) == (
        "n/a", "n/a", "n/a", "n/a")
    summary = tx.summary_paragraph(verdicts)
    assert "Not applicable under train_symmetry=none: orbit (neither arm has the metric" in summary
    assert "nan" not in summary and "orbit" not in summary.split("Not applicable")[0]


def test_without_the_same_size_reference_an_arm_falls_back_to_the_nearest_exact_size():
    results = relaxed_arms()
    table = v.verdict_table(results[results["subsampling"] == "stride"]).table
    approx = table[(table["arm"] == "p4 29 approx") & (table["metric"] == "test_acc_upright")].iloc[0]
    assert (approx.exact_arm, approx.reference) == ("p4 28 exact", "nearest exact size")
    assert approx["diff"] == pytest.approx(-0.05, abs=0.01)


@pytest.mark.parametrize(("seeds", "verdict"), [(4, "inconclusive"), (5, "approx wins")])
def test_arms_without_spread_and_enough_seeds_get_an_exact_permutation_test(seeds, verdict):
    rows = [_row(i, 0, "p4", size, "none", seed, dict.fromkeys(METRICS, 0.9 if size == 28 else 0.95))
            for i, (size, seed) in enumerate((s, k) for s in (28, 29) for k in range(seeds))]
    verdicts = v.verdict_table(pd.DataFrame(rows))
    table = verdicts.table
    smallest = 2 / math.comb(2 * seeds, seeds)  # only the observed split and its mirror separate 0.9 from 0.95
    assert table["p_value"].to_numpy() == pytest.approx([smallest] * 4)
    assert table["p_adjusted"].to_numpy() == pytest.approx([4 * smallest] * 4)  # Holm over the four metrics
    assert (table["verdict"] == verdict).all() and (table["note"] == cmp.PERMUTED).all()
    assert table["ci_low"].isna().all() and table["detectable"].isna().all() and table["seeds_needed"].isna().all()
    summary = tx.summary_paragraph(verdicts)
    assert "(4 exact permutation tests over seeds, Holm-adjusted at alpha = 0.05)" in summary
    assert f"exact permutation test, p = {smallest:.2g}" in summary and "nan" not in summary
    # an inconclusive test says what Holm's correction made of its p, and that these seeds can give no smaller one
    assert (f"exact permutation test, p = {smallest:.2g}, {4 * smallest:.2g} after Holm's correction; {seeds} and "
            f"{seeds} seeds can give no smaller p: more seeds needed" in summary) == (verdict == "inconclusive")
    assert "To detect each inconclusive difference" not in summary  # no spread: Welch's power says nothing here
    shown = tx.display_table(verdicts).iloc[0]
    assert shown["diff [95% CI] (points)"] == "+5.00" and shown["verdict"] == verdict
