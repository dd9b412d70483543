"""The README's main command, end to end: `make demo` runs the quick sweep on real MNIST digits and reports it.

Only the storage differs (SWEEP_STORAGE, a temporary directory). The report's numbers are recomputed here from
the Parquet files, and its HTML page is rendered in headless Chromium.
"""

import math
import os
import re
import shutil
import subprocess
from pathlib import Path
from xml.etree import ElementTree

import pandas as pd
import pytest
from scipy import stats

from equisweep.pipeline.sweep.results import read_angles, read_results
from tests.helpers import read_wandb_run

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SECTIONS = ["## Summary", "## Metrics", "## Verdict", "## Accuracy over test rotation angle", "## Gap map",
            "## Equivariance error per layer", "## Sweep"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    storage = tmp_path_factory.mktemp("demo")
    env = {**os.environ, "WANDB_MODE": "offline"}  # as on a fresh machine without a W&B key
    result = subprocess.run(["make", "--no-print-directory", "demo", f"SWEEP_STORAGE={storage}"], cwd=REPO,
                            env=env, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    return storage / "quick", result


@pytest.mark.trains
def test_the_sweep_finishes_every_trial(demo):
    sweep_dir, result = demo
    table = read_results(str(sweep_dir))
    assert len(table) == 20 and (table["status"] == "finished").all()
    assert "quick: 20 trials, 20 finished" in result.stdout
    assert table["trial_id"].is_unique and not table["trial_id"].str.contains("-seed").any()  # pack: 1, on a CPU
    # exact: whether the sampling grids are (the rpp net's are; its relaxation is its own column)
    arms = set(zip(table["dataset"], table["group"], table["input_size"], table["subsampling"], table["relaxation"],
                   table["exact"]))
    assert arms == {("mnist5k", "p4", 28, "stride", "none", True), ("mnist5k", "p4", 29, "stride", "none", False),
                    ("mnist5k", "p4", 29, "adaptive", "none", True), ("mnist5k", "z2", 28, "stride", "none", None),
                    ("mnist6-180", "p4", 28, "stride", "none", True), ("mnist6-180", "p4", 28, "stride", "rpp", True)}
    p4 = table[table["group"] == "p4"]
    digits, sixes = p4[p4["dataset"] == "mnist5k"], p4[p4["dataset"] == "mnist6-180"]
    # two epochs of real digits (chance 0.1): one epoch already gives 0.80 to 0.85 over seeds and SIMD kernel paths
    assert (digits["test_acc_upright"] > 0.7).all()
    exact = p4["exact"].astype(bool) & (p4["relaxation"] == "none")  # object column: None on the plain CNN's rows
    assert (p4.loc[exact, "eq_error"] < 1e-4).all() and (p4.loc[~exact, "eq_error"] > 1e-3).all()
    # a 6 against its half turn: the exact net cannot beat chance, the relaxed one breaks its symmetry and can
    assert (sixes.loc[sixes["relaxation"] == "none", "test_acc_upright"] == 0.5).all()
    assert (sixes.loc[sixes["relaxation"] == "rpp", "test_acc_upright"] > 0.8).all()


def test_the_report_prints_its_path_and_verdicts(demo):
    sweep_dir, result = demo
    assert f"report: {sweep_dir / 'report' / 'report.md'}" in result.stdout
    assert "| train_symmetry | metric | arm | mean ± std (n) | exact arm | exact mean ± std (n) |" in result.stdout
    text = (sweep_dir / "report" / "report.md").read_text()
    positions = [text.index(section) for section in SECTIONS]
    assert positions == sorted(positions)
    assert "Sweep quick: 20 trials, 20 finished" in text


def test_report_numbers_equal_those_recomputed_from_parquet(demo):
    sweep_dir, _ = demo
    results, angles = read_results(str(sweep_dir)), read_angles(str(sweep_dir))
    verdict = pd.read_csv(sweep_dir / "report" / "verdict.csv", keep_default_na=False, na_values=[""])
    text = (sweep_dir / "report" / "report.md").read_text()
    p4, z2 = results[results["group"] == "p4"], results[results["group"] == "z2"]
    # mnist5k, regimes none and c4 x (p4 29 approx against its same-size reference p4 29 adaptive exact and against
    # the paper's pair p4 28 exact, plain CNN), and mnist6-180 x p4 28 rpp against p4 28 exact; x metrics
    assert len(verdict) == (2 * 3 + 1) * 4
    assert list(verdict["arm"].drop_duplicates()) == ["p4 29 approx", "plain CNN 28", "p4 28 rpp"]
    approx_rows = verdict[verdict["arm"] == "p4 29 approx"]
    assert set(approx_rows.loc[approx_rows["reference"] == "paper's pair", "exact_arm"]) == {"p4 28 exact"}
    assert "| p4 29 approx | " in text and "| p4 28 exact (paper's pair) | " in text
    p_values = []
    for row in approx_rows[approx_rows["reference"] != "paper's pair"].itertuples():
        assert (row.exact_arm, row.reference) == ("p4 29 adaptive exact", "same size")
        assert row.verdict in ("approx wins", "exact wins", "inconclusive")
        cell = p4[(p4["train_symmetry"] == row.train_symmetry) & (p4["input_size"] == 29)]
        exact, approx = cell.loc[cell["exact"].astype(bool), row.metric], cell.loc[~cell["exact"].astype(bool),
                                                                                   row.metric]
        assert (row.exact_n, row.arm_n) == (2, 2)
        assert row.exact_mean == pytest.approx(exact.mean()) and row.arm_mean == pytest.approx(approx.mean())
        assert row.exact_std == pytest.approx(exact.std(ddof=1))
        assert row.diff == pytest.approx(approx.mean() - exact.mean())
        expected = stats.ttest_ind(approx, exact, equal_var=False).pvalue
        if math.isnan(expected) or "across seeds" in str(row.note):  # an arm without spread: 2 + 2 seeds, no test
            assert math.isnan(row.p_value)
        else:
            assert row.p_value == pytest.approx(expected)
            # two seeds: the detectable difference, or the seeds that would detect one within 100 points
            assert 0 < row.detectable <= 1 or row.seeds_to_detect > 2
            assert row.seeds_needed >= 2 and -1 <= row.ci_low <= row.ci_high <= 1
            p_values.append(row.p_value)
        shown = (f"| {row.train_symmetry} | {row.label} | p4 29 approx | {approx.mean() * 100:.2f} ± "
                 f"{approx.std(ddof=1) * 100:.2f} (2) | p4 29 adaptive exact (same size) | {exact.mean() * 100:.2f} ")
        assert shown in text
    assert len(p_values) >= 4
    # the plain CNN: its accuracy per regime, exact empty (not applicable), never tested
    for row in verdict[verdict["arm"] == "plain CNN 28"].itertuples():
        values = z2.loc[z2["train_symmetry"] == row.train_symmetry, row.metric]
        assert row.arm_mean == pytest.approx(values.mean()) and row.arm_n == 2
        assert row.verdict == "reference" and math.isnan(row.p_value) and pd.isna(row.exact)
    # the relaxed net on the sixes, against the exact net of its size on the same data
    sixes = p4[p4["dataset"] == "mnist6-180"]
    for row in verdict[verdict["arm"] == "p4 28 rpp"].itertuples():
        assert (row.dataset, row.exact_arm, row.reference) == ("mnist6-180", "p4 28 exact", "same size")
        rpp, exact = (sixes.loc[sixes["relaxation"] == name, row.metric] for name in ("rpp", "none"))
        assert (row.arm_mean, row.exact_mean) == (pytest.approx(rpp.mean()), pytest.approx(exact.mean()))
        assert row.diff == pytest.approx(rpp.mean() - exact.mean())
    assert "Under dataset=mnist6-180, train_symmetry=none: p4 28 rpp " in text
    # the mean over angles in the table is the mean of each trial's per-angle accuracies
    per_trial = angles.groupby("trial_id")["accuracy"].mean()
    assert per_trial.to_dict() == pytest.approx(results.set_index("trial_id")["test_acc_mean_angles"].to_dict())


def test_figures_are_valid_png_and_svg(demo):
    sweep_dir, _ = demo
    figures = sweep_dir / "report" / "figures"
    for name in ("accuracy_by_angle", "gap_map", "layer_errors"):
        assert (figures / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert ElementTree.parse(figures / f"{name}.svg").getroot().tag == "{http://www.w3.org/2000/svg}svg"


def test_the_report_is_logged_to_wandb_as_the_sweeps_summary_run(demo):
    sweep_dir, _ = demo  # `make demo` asks for it with --log-to-wandb
    run_files = list((sweep_dir / "report" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert [run_file.name for run_file in run_files] == ["run-quick-report.wandb"]
    logged = read_wandb_run(run_files[0])
    assert logged["group"] == "quick"
    assert {"accuracy_by_angle", "gap_map", "layer_errors", "verdict"} <= {k.split("/")[0] for k in
                                                                           logged["history_keys"]}


def test_the_html_page_renders_in_headless_chromium(demo, tmp_path):
    sweep_dir, _ = demo
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Chromium is needed to render the report: apt-get install chromium (make test installs it)"
    page = (sweep_dir / "report" / "report.html").read_text()
    # A probe appended to a copy of the page records how many embedded figures decoded.
    probe = ("<script>document.body.dataset.decoded = [...document.images]"
             ".filter(i => i.complete && i.naturalWidth > 0).length;</script></body>")
    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("</body>", probe))
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000"]
    dom = subprocess.run([*flags, "--dump-dom", probed.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    decoded = re.search(r'data-decoded="(\d+)"', dom.stdout)
    assert decoded and int(decoded.group(1)) == page.count("<img") >= 3
    assert "Uncaught" not in dom.stderr
    screenshot = tmp_path / "report.png"
    shot = subprocess.run([*flags, f"--screenshot={screenshot}", "--window-size=1200,3000",
                           (sweep_dir / "report" / "report.html").as_uri()], capture_output=True, text=True,
                          timeout=120)
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 50_000
