"""The report's figures, drawn from small synthetic sweep tables and read back from the artists they made."""

import ast
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.figure import Figure
from matplotlib.image import imread

from equisweep.errors import UserError
from equisweep.names import gaussian_params
from equisweep.pipeline.report import arms
from equisweep.pipeline.report import figures as fg
from tests.helpers import run_python

REGIMES = ("none", "gaussian(45,20)")
ARMS = (("p4", 28, True), ("p4", 29, False), ("z2", 28, None))  # a plain CNN is neither exact nor approximate
LABELS = ("p4 28 exact", "p4 29 approx", "plain CNN 28")
LAYERS = (*(f"block{i}" for i in range(1, 8)), "head", "output")
TEST_ANGLES = tuple(float(a) for a in range(0, 360, 10))


def _accuracy(arm: int, regime: int, seed: int, angle: float) -> float:
    """Seeds 0, 1, 2 spread by 0.01: the mean over seeds is the seed-1 value and the std over seeds is 0.01."""
    return 0.9 - 0.1 * arm - 0.05 * regime - 0.0005 * angle + 0.01 * seed


def _layer_error(arm: int, layer: int, seed: int) -> float:
    if arm == 0:  # the exact p4 net: round-off, and below the plot's floor at the output
        return 1e-10 if LAYERS[layer] == "output" else 2e-7
    return 10.0 ** (-4 + 0.3 * layer) * (1 + seed)


def _tables(seeds=(0, 1, 2), regimes=REGIMES):
    rows, angles = [], []
    for r, regime in enumerate(regimes):
        for a, (group, size, exact) in enumerate(ARMS):
            for seed in seeds:
                trial = f"t{len(rows)}"
                rows.append({"trial_id": trial, "trial_name": f"{trial}-{group}-{size}", "cell": len(rows),
                             "status": "finished", "error": None, "attempts": 1, "dataset": "mnist", "model": "p4cnn",
                             "group": group, "input_size": size, "train_symmetry": regime, "seed": seed, "lr": 0.01,
                             "exact": exact, "val_acc": 0.9, "test_acc_upright": _accuracy(a, r, seed, 0.0),
                             "test_acc_orbit": 0.8 - 0.02 * a, "test_acc_mean_angles": 0.7 - 0.03 * a,
                             "test_acc_min_angles": 0.4 - 0.05 * a, "eq_error": 0.1, "trial_seconds": 5.0,
                             **{f"eq_error/{name}": _layer_error(a, k, seed) for k, name in enumerate(LAYERS)},
                             "eq_error/stem": np.nan})  # a layer another model has: never drawn for this one
                angles += [{"trial_id": trial, "angle": t, "accuracy": _accuracy(a, r, seed, t)}
                           for t in TEST_ANGLES]
    # failed trials: one in an existing arm with wild numbers, one that would be an arm of its own
    for trial, size, exact in (("bad1", 28, True), ("bad2", 27, False)):
        rows.append({**rows[0], "trial_id": trial, "cell": len(rows), "status": "failed", "error": "boom",
                     "input_size": size, "exact": exact, "seed": 7, "test_acc_upright": 0.0,
                     **{f"eq_error/{name}": 1.0 for name in LAYERS}})
        angles += [{"trial_id": trial, "angle": t, "accuracy": 0.0} for t in TEST_ANGLES]
    return pd.DataFrame(rows), pd.DataFrame(angles)


def _accuracy_axes(fig) -> list:
    return [ax for ax in fig.axes if ax.get_label() != fg.DENSITY_AXIS]


def _density_axes(fig) -> list:
    return [ax for ax in fig.axes if ax.get_label() == fg.DENSITY_AXIS]


def _arm_lines(ax) -> dict:
    return {line.get_label(): line for line in ax.get_lines() if not line.get_label().startswith("_")}


def _gid(ax, gid: str) -> list:
    return [artist for artist in ax.get_children() if artist.get_gid() == gid]


# ---------------------------------------------------------------------------------------------------------------
# accuracy by angle


def test_accuracy_by_angle_draws_one_panel_per_regime_and_one_curve_per_arm():
    results, angles = _tables()
    fig = fg.accuracy_by_angle(results, angles)

    assert isinstance(fig, Figure) and len(_accuracy_axes(fig)) == 2 and len(_density_axes(fig)) == 2
    assert [ax.get_title() for ax in _accuracy_axes(fig)] == ["trained: none", "trained: gaussian(45,20)"]
    colours = {}
    for r, ax in enumerate(_accuracy_axes(fig)):
        lines = _arm_lines(ax)
        assert sorted(lines) == sorted(LABELS)  # the failed trials' would-be arm "p4 27 approx" is not drawn
        for a, label in enumerate(LABELS):
            x, y = lines[label].get_data()
            assert list(x) == [*TEST_ANGLES, 360.0]  # the circle closes: 360 repeats 0
            expected = [100 * _accuracy(a, r, 1, t) for t in TEST_ANGLES]  # seed 1 is the mean of seeds 0..2
            np.testing.assert_allclose(y, [*expected, expected[0]], atol=1e-9)  # failed trials left out
            colours.setdefault(label, set()).add(lines[label].get_color())
        assert lines["p4 28 exact"].get_linestyle() == "-"
        assert lines["p4 29 approx"].get_linestyle() == "--"
        assert lines["plain CNN 28"].get_linestyle() == ":"
        np.testing.assert_allclose(ax.get_xticks(), np.arange(0, 361, 45))
        assert ax.get_xlim() == (0.0, 360.0)
        assert "%" in ax.get_ylabel()
    assert all("rotation" in ax.get_xlabel() for ax in _density_axes(fig))
    assert all(len(c) == 1 for c in colours.values())  # one colour per arm in every panel
    assert len(set().union(*colours.values())) == 3

    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert sorted(legend) == sorted([*LABELS, "training angles (lower axes)"])


def test_bands_are_one_std_over_seeds_and_vanish_with_one_seed():
    results, angles = _tables()
    fig = fg.accuracy_by_angle(results, angles)
    for ax in _accuracy_axes(fig):
        bands = _gid(ax, fg.BAND_GID)
        assert len(bands) == 3 and all(isinstance(b, PolyCollection) for b in bands)
    ax = _accuracy_axes(fig)[0]
    band = next(b for b in _gid(ax, fg.BAND_GID) if b.get_facecolor()[0][:3].tolist()
                == list(_to_rgb(_arm_lines(ax)["p4 28 exact"].get_color())))
    ys = band.get_paths()[0].vertices[:, 1]
    mean = [100 * _accuracy(0, 0, 1, t) for t in TEST_ANGLES]
    assert ys.max() == pytest.approx(max(mean) + 1.0) and ys.min() == pytest.approx(min(mean) - 1.0)  # std: 1 pt

    one_seed = fg.accuracy_by_angle(*_tables(seeds=(0,)))
    for ax in _accuracy_axes(one_seed):
        assert _gid(ax, fg.BAND_GID) == [] and len(_arm_lines(ax)) == 3


def _to_rgb(colour):
    from matplotlib.colors import to_rgb

    return to_rgb(colour)


def test_training_angles_have_their_own_axis_under_each_panel():
    results, angles = _tables()
    fig = fg.accuracy_by_angle(results, angles)
    (none_ax, gauss_ax), (none_density, gauss_density) = _accuracy_axes(fig), _density_axes(fig)
    assert _gid(none_ax, fg.OVERLAY_GID) == [] and _gid(gauss_ax, fg.OVERLAY_GID) == []  # accuracies only
    for ax, density in ((none_ax, none_density), (gauss_ax, gauss_density)):
        assert density.get_shared_x_axes().joined(ax, density)
        top, bottom = ax.get_position(), density.get_position()
        assert bottom.y1 <= top.y0 and bottom.height < top.height / 2  # a small axis of its own, below
    (density,) = _gid(gauss_density, fg.OVERLAY_GID)
    vertices = density.get_paths()[0].vertices
    peak = vertices[np.argmax(vertices[:, 1])]
    assert peak[0] == pytest.approx(45.0, abs=0.5)  # the mode at the Gaussian's mean
    assert peak[1] == pytest.approx(fg.wrapped_normal_pdf(np.array([45.0]), 45.0, 20.0)[0])  # per degree
    (upright,) = _gid(none_density, fg.OVERLAY_GID)  # "none" trains at 0 degrees only
    assert sorted({seg[0][0] for seg in upright.get_segments()}) == [0.0, 360.0]
    assert gauss_ax.get_ylim() == none_ax.get_ylim() and gauss_ax.get_ylim()[0] > 10


def test_other_regimes_get_their_own_overlays_and_eight_panels_fit_a_grid():
    regimes = ("uniform", "c4", "d4", "flip", "gaussian(45,40)", "none", "gaussian(45,20)", "gaussian(0,90)")
    fig = fg.accuracy_by_angle(*_tables(seeds=(0, 1), regimes=regimes))
    assert len(_accuracy_axes(fig)) == 8
    titles = [ax.get_title().removeprefix("trained: ") for ax in _accuracy_axes(fig)]
    assert titles == ["none", "flip", "gaussian(45,20)", "gaussian(45,40)", "gaussian(0,90)", "c4", "d4", "uniform"]
    overlays = {title: _gid(ax, fg.OVERLAY_GID) for title, ax in zip(titles, _density_axes(fig))}
    (quarters,) = overlays["c4"]
    assert isinstance(quarters, LineCollection)
    assert sorted({seg[0][0] for seg in quarters.get_segments()}) == [0.0, 90.0, 180.0, 270.0, 360.0]
    (flat,) = overlays["uniform"]
    assert flat.get_paths()[0].vertices[:, 1].max() == pytest.approx(1 / 360)

    def peak(title):
        return overlays[title][0].get_paths()[0].vertices[:, 1].max()

    assert peak("gaussian(45,20)") == pytest.approx(2 * peak("gaussian(45,40)"), rel=1e-3)
    width, height = fig.get_size_inches()
    assert {ax.get_subplotspec().get_geometry()[:2] for ax in fig.axes} == {(4, 4)} and width < 20 and height < 12


def test_fraction_scale_and_extra_arm_settings():
    results, angles = _tables(seeds=(0, 1), regimes=("none",))
    results.loc[results["group"] == "z2", "model"] = "z2cnn"
    fig = fg.accuracy_by_angle(results, angles, percent=False)
    labels = sorted(_arm_lines(fig.axes[0]))
    assert labels == ["p4 28 exact model=p4cnn", "p4 29 approx model=p4cnn", "plain CNN 28 model=z2cnn"]
    assert fig.axes[0].get_ylim()[1] <= 1.02 and "fraction" in fig.axes[0].get_ylabel()


def test_no_finished_trials_is_a_user_error():
    results, angles = _tables()
    with pytest.raises(UserError, match="no finished trial"):
        fg.accuracy_by_angle(results.assign(status="running"), angles)


# ---------------------------------------------------------------------------------------------------------------
# trials, arms, regimes


def test_a_searched_cell_is_represented_by_its_best_trial_and_searched_values_do_not_make_arms():
    results, _ = _tables(seeds=(0,), regimes=("none",))
    finished = results[results["status"] == "finished"]
    twin = finished.iloc[[0]].assign(trial_id="twin", lr=0.001, val_acc=0.95)
    searched = pd.concat([finished.assign(val_acc=0.9), twin], ignore_index=True)
    kept = arms.finished_trials(searched)
    assert len(kept) == len(finished) and "twin" in set(kept["trial_id"]) and "t0" not in set(kept["trial_id"])
    assert arms.arm_columns(searched) == ["group", "input_size", "exact"]  # lr varies inside a cell

    varied = finished.assign(width=[8, 16, 8])
    assert arms.arm_columns(varied) == ["group", "input_size", "exact", "width"]
    assert arms.label(dict(zip(arms.arm_columns(varied), ("p4", 29, False, 16)))) == "p4 29 approx width=16"


def test_regime_parsing_order_and_wrapped_density():
    assert gaussian_params("gaussian(45,20)") == (45.0, 20.0)
    assert gaussian_params("Gaussian( -10 , 7.5 )") == (-10.0, 7.5)
    assert gaussian_params("uniform") is None
    regimes = ["uniform", "gaussian(45,40)", "c4", "none", "gaussian(45,20)", "flip", "d4"]
    assert sorted(regimes, key=arms.regime_order) == ["none", "flip", "gaussian(45,20)", "gaussian(45,40)", "c4", "d4",
                                                     "uniform"]
    x = np.linspace(0, 360, 3601)[:-1]
    density = fg.wrapped_normal_pdf(x, 350.0, 20.0)
    assert density.sum() * 0.1 == pytest.approx(1.0, rel=1e-6)  # a density on the circle
    assert fg.wrapped_normal_pdf(np.array([10.0]), 350.0, 20.0)[0] == pytest.approx(
        fg.wrapped_normal_pdf(np.array([330.0]), 350.0, 20.0)[0])  # mass wraps past 360


# ---------------------------------------------------------------------------------------------------------------
# gap maps


def _verdicts() -> pd.DataFrame:
    rows = []
    for regime, shift in (("gaussian(45,20)", 0.01), ("none", 0.0)):
        for metric, diff, p in (("min over angles", -0.123, 0.001), ("upright", 0.004, 0.6),
                                ("orbit", -0.052, 0.049), ("mean over angles", 0.021, np.nan)):
            rows.append({"train_symmetry": regime, "group": "p4", "metric": metric, "diff": diff + shift,
                         "p_adjusted": p, "verdict": "exact wins" if p < 0.05 else "inconclusive"})
    return pd.DataFrame(rows)


def _cells(fig) -> dict:
    ax = fig.axes[0]
    rows = [t.get_text() for t in ax.get_yticklabels()]
    columns = [t.get_text() for t in ax.get_xticklabels()]
    return {(rows[round(t.get_position()[1])], columns[round(t.get_position()[0])]): t.get_text()
            for t in ax.texts if t.get_gid() == "gap-value"}


def test_gap_map_annotates_points_and_significance_in_the_tables_row_order():
    table = _verdicts()
    fig = fg.gap_map(table, conditions=["train_symmetry"])
    assert isinstance(fig, Figure) and len(fig.axes) == 2  # the map and its colour bar
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["upright", "orbit", "mean over angles", "min over angles"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["gaussian(45,20)", "none"]  # as the table lists them
    expected = {(row.train_symmetry, row.metric): f"{100 * row.diff:+.1f}" + ("*" if row.p_adjusted < 0.05 else "")
                for row in table.itertuples()}
    assert _cells(fig) == expected
    assert _cells(fig)[("none", "orbit")] == "-5.2*" and _cells(fig)[("none", "mean over angles")] == "+2.1"
    image = ax.get_images()[0]
    norm = image.norm
    assert norm.vmin == -norm.vmax == pytest.approx(-12.3)  # centred at 0
    assert image.get_array()[1, 3] == pytest.approx(-12.3)
    assert image.get_cmap()(norm(0.0))[:3] == pytest.approx(image.get_cmap()(0.5)[:3])


def test_gap_map_mutes_cells_that_are_not_significant_and_shows_their_intervals():
    table = _verdicts().assign(ci_low=lambda t: t["diff"] - 0.01, ci_high=lambda t: t["diff"] + 0.01)
    fig = fg.gap_map(table, conditions=["train_symmetry"])
    ax = fig.axes[0]
    alpha = np.asarray(ax.get_images()[0].get_alpha())
    significant = np.array([[False, True, False, True]] * 2)  # upright, orbit, mean, min
    np.testing.assert_array_equal(alpha, np.where(significant, 1.0, fg.MUTED))
    texts = {text.get_text(): text.get_color() for text in ax.texts if text.get_gid() == "gap-value"}
    assert texts["-5.2*\n[-6.2, -4.2]"] != "0.35" and texts["+0.4\n[-0.6, +1.4]"] == "0.35"


def test_gap_map_has_one_row_per_condition_and_arm_and_leaves_out_reference_rows():
    table = pd.concat([_verdicts().assign(arm=arm) for arm in ("p4 27 approx", "p4 29 approx")]
                      + [_verdicts().assign(arm="plain CNN 28", verdict="reference", diff=np.nan)], ignore_index=True)
    table = table.sort_values(["train_symmetry", "arm"], key=lambda c: c.map(arms.regime_order) if c.name ==
                              "train_symmetry" else c, kind="stable")
    fig = fg.gap_map(table, conditions=["train_symmetry"], colours={"p4 27 approx": "#123456"})
    ticks = fig.axes[0].get_yticklabels()
    assert [t.get_text() for t in ticks] == ["none, p4 27 approx", "none, p4 29 approx",
                                             "gaussian(45,20), p4 27 approx", "gaussian(45,20), p4 29 approx"]
    assert ticks[0].get_color() == "#123456" and ticks[1].get_color() == "black"


def test_gap_map_conditions_default_to_the_columns_before_metric_and_missing_cells_stay_blank():
    table = _verdicts()
    table = table[~((table["train_symmetry"] == "none") & (table["metric"] == "upright"))]
    fig = fg.gap_map(table)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["gaussian(45,20), p4", "none, p4"]
    cells = _cells(fig)
    assert len(cells) == 7 and ("none, p4", "upright") not in cells
    assert bool(np.ma.getmaskarray(fig.axes[0].get_images()[0].get_array())[1, 0])
    with pytest.raises(UserError, match="several rows"):
        fg.gap_map(pd.concat([_verdicts(), _verdicts()]), conditions=["train_symmetry"])
    with pytest.raises(UserError, match="no column"):
        fg.gap_map(_verdicts(), conditions=["seed"])


def test_gap_by_gaussian_std_plots_approx_minus_exact_per_metric():
    results, _ = _tables(regimes=("none", "gaussian(45,20)", "gaussian(45,40)"))
    fig = fg.gap_by(results, axis="gaussian_std")
    assert [ax.get_title() for ax in fig.axes] == ["upright", "orbit", "mean over angles", "min over angles"]
    container = fig.axes[1].containers[0]
    x, y = container.lines[0].get_data()
    np.testing.assert_allclose(x.astype(float), [20.0, 40.0])  # "none" has no std and is left out
    np.testing.assert_allclose(y, [-2.0, -2.0])  # orbit: p4 29 approx minus p4 28 exact, the plain CNN left out
    upright = fig.axes[0].containers[0].lines[0].get_data()[1]
    np.testing.assert_allclose(upright, [-10.0, -10.0])
    assert container.get_label() == "p4 29 approx, gaussian_mean=45"
    assert container.lines[0].get_color() == arms.colours(results)["p4 29 approx"]

    sizes = fg.gap_by(results, axis="input_size", metrics=["test_acc_min_angles"])
    assert len(sizes.axes) == 1
    point = sizes.axes[0].containers[0]  # one approximate size: one point per regime, in its arm's colour
    x, y = point.lines[0].get_data()
    np.testing.assert_allclose(np.asarray(x, float), [29.0])
    np.testing.assert_allclose(np.asarray(y, float), [-5.0])  # min over angles: p4 29 approx minus p4 28 exact
    assert point.lines[0].get_color() == arms.colours(results)["p4 29 approx"]


# ---------------------------------------------------------------------------------------------------------------
# per-layer errors


def test_layer_errors_per_group_in_network_order_on_a_floored_log_scale():
    results, _ = _tables()
    fig = fg.layer_errors(results, floor=1e-8)
    assert [ax.get_title() for ax in fig.axes] == ["p4", "plain CNN (vs p4 quarter turns)"]
    for ax in fig.axes:
        assert ax.get_yscale() == "log" and ax.get_ylim()[0] <= 1e-8
        assert [t.get_text() for t in ax.get_xticklabels()] == list(LAYERS)  # eq_error/stem is all NaN: dropped
    p4 = {c.get_label(): c for c in fig.axes[0].containers}
    assert sorted(p4) == sorted(f"{arm} · {regime}" for arm in LABELS[:2] for regime in REGIMES)
    exact = p4["p4 28 exact · none"].lines[0]
    approx = p4["p4 29 approx · none"].lines[0]
    np.testing.assert_allclose(exact.get_ydata(), [2e-7] * 8 + [1e-8])  # the 1e-10 output is drawn at the floor
    np.testing.assert_allclose(approx.get_ydata(), [2 * 10.0 ** (-4 + 0.3 * k) for k in range(9)])  # mean, seeds 0..2
    assert exact.get_linestyle() == "-" and approx.get_linestyle() == "--"
    np.testing.assert_allclose(np.round(approx.get_xdata()), np.arange(9))  # nudged, not moved to another layer
    # colour: the arm, in every regime; marker: the regime
    gauss = p4["p4 28 exact · gaussian(45,20)"].lines[0]
    assert exact.get_color() == gauss.get_color() != approx.get_color()
    assert exact.get_marker() != gauss.get_marker() and exact.get_marker() == approx.get_marker()
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == [*LABELS, "trained: none", "trained: gaussian(45,20)"]

    # error bars span min..max over seeds: seeds 0..2 scale the approximate error by 1..3
    segments = p4["p4 29 approx · none"].lines[2][0].get_segments()
    np.testing.assert_allclose([s[0][1] for s in segments], [10.0 ** (-4 + 0.3 * k) for k in range(9)])
    np.testing.assert_allclose([s[1][1] for s in segments], [3 * 10.0 ** (-4 + 0.3 * k) for k in range(9)])


def test_layer_errors_pooled_over_regimes_and_without_the_plain_cnn():
    results, _ = _tables()
    fig = fg.layer_errors(results, by_regime=False, include_trivial=False)
    assert [ax.get_title() for ax in fig.axes] == ["p4"]
    labels = sorted(c.get_label() for c in fig.axes[0].containers)
    assert labels == ["p4 28 exact", "p4 29 approx"]
    with pytest.raises(UserError, match="per-layer"):
        fg.layer_errors(results.drop(columns=[c for c in results if c.startswith("eq_error/")]))


def test_each_arm_has_one_colour_in_every_figure():
    results, angles = _tables(regimes=("none", "gaussian(45,20)", "gaussian(45,40)"))
    colours = arms.colours(results)
    assert set(colours) == set(LABELS) and len(set(colours.values())) == 3
    drawn = {}
    for ax in _accuracy_axes(fg.accuracy_by_angle(results, angles)):
        for label, line in _arm_lines(ax).items():
            drawn.setdefault(label, set()).add(line.get_color())
    for ax in fg.layer_errors(results).axes:
        for container in ax.containers:
            drawn.setdefault(container.get_label().split(" · ")[0], set()).add(container.lines[0].get_color())
    for axis in ("gaussian_std", "input_size"):
        for ax in fg.gap_by(results, axis=axis).axes:
            for container in ax.containers:
                drawn.setdefault("p4 29 approx", set()).add(container.lines[0].get_color())
    assert {label: values for label, values in drawn.items()} == {label: {colour} for label, colour in colours.items()}
    # an older table that calls the plain CNN exact names and colours it the same way
    older = results.assign(exact=[True if g == "z2" else e for g, e in zip(results["group"], results["exact"])])
    assert arms.colours(older) == colours


# ---------------------------------------------------------------------------------------------------------------
# saving, imports


def test_save_figure_writes_a_png_and_an_svg(tmp_path):
    fig = fg.accuracy_by_angle(*_tables())
    paths = fg.save_figure(fig, tmp_path / "figs", "accuracy_by_angle")
    assert paths == [tmp_path / "figs" / "accuracy_by_angle.png", tmp_path / "figs" / "accuracy_by_angle.svg"]
    png, svg = paths
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = imread(png)
    width, height = fig.get_size_inches()
    assert pixels.shape[:2] == (round(height * 150), round(width * 150)) and pixels.std() > 0.01  # not blank
    root = ET.parse(svg).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert float(root.get("width").removesuffix("pt")) == pytest.approx(width * 72)
    assert len(root.findall(".//{http://www.w3.org/2000/svg}path")) > 50  # curves, bands, text as paths
    with pytest.raises(UserError, match="plain file stem"):
        fg.save_figure(fig, tmp_path, "../escape")


def test_figures_imports_no_training_code():
    imported = set()
    for module in Path(fg.__file__).parent.glob("*.py"):  # every figure's module and their shared helpers
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                imported.add(node.module)
    roots = {name.split(".")[0] for name in imported}
    assert roots <= {"__future__", "collections", "math", "pathlib", "re", "typing", "numpy", "pandas", "matplotlib",
                     "scipy", "equisweep"}, roots
    # and transitively, in a fresh interpreter: the package imports its training code lazily, so none of it loads
    probe = (
        "import sys\n"
        "import equisweep.pipeline.report.figures\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'torch', 'lightning', 'pytorch_lightning', 'ray', 'wandb', 'optuna', 'torchvision', 'e2cnn'})\n"
        "print(heavy)\n"
        "assert not heavy\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
    )
    run = run_python(probe)
    assert run.returncode == 0, run.stdout + run.stderr


# ---------------------------------------------------------------------------------------------------------------
# relaxed and same-size arms, and what breaking symmetry bought

RELAXED_ARMS = (  # (input size, exact, relaxation, subsampling, upright accuracy, eq_error)
    (28, True, "none", "stride", 0.90, 0.0), (29, True, "none", "adaptive", 0.88, 0.0),
    (29, False, "none", "stride", 0.85, 0.3), (28, True, "rpp", "stride", 0.95, 0.2),
    (28, True, "relaxed", "stride", 0.90, 0.05))
RELAXED_LABELS = ("p4 28 exact", "p4 29 adaptive exact", "p4 29 approx", "p4 28 rpp", "p4 28 relaxed")


def _relaxed_tables(datasets=("mnist5k", "mnist6-180")):
    """The arms above on two datasets, upright training, three seeds spread by 0.6 points."""
    rows, angles = [], []
    for d, dataset in enumerate(datasets):
        for size, exact, relaxation, subsampling, upright, error in RELAXED_ARMS:
            for seed in range(3):
                trial = f"t{len(rows)}"
                accuracy = upright - 0.1 * d + 0.006 * seed
                rows.append({"trial_id": trial, "cell": len(rows), "status": "finished", "dataset": dataset,
                             "model": "p4cnn", "group": "p4", "input_size": size, "relaxation": relaxation,
                             "subsampling": subsampling, "train_symmetry": "none", "seed": seed, "exact": exact,
                             "val_acc": accuracy, "test_acc_upright": accuracy, "test_acc_orbit": 0.8,
                             "test_acc_mean_angles": 0.7, "test_acc_min_angles": 0.5 + 0.001 * seed,
                             "eq_error": error * (1 + 0.1 * seed), "relaxation/block1": 0.1 * (relaxation != "none")})
                angles += [{"trial_id": trial, "angle": t, "accuracy": accuracy} for t in (0.0, 90.0, 180.0)]
    return pd.DataFrame(rows), pd.DataFrame(angles)


def test_relaxed_and_same_size_arms_are_named_and_styled_and_the_data_picks_the_panel():
    results, angles = _relaxed_tables()
    assert arms.arm_columns(results) == ["group", "input_size", "exact", "relaxation", "subsampling"]
    assert set(arms.colours(results)) == set(RELAXED_LABELS)  # the dataset is no arm
    fig = fg.accuracy_by_angle(results, angles)
    axes = _accuracy_axes(fig)
    assert [ax.get_title() for ax in axes] == ["mnist5k · trained: none", "mnist6-180 · trained: none"]
    lines = _arm_lines(axes[0])
    assert set(lines) == set(RELAXED_LABELS)
    assert {label: line.get_linestyle() for label, line in lines.items()} == {
        "p4 28 exact": "-", "p4 29 adaptive exact": "-", "p4 29 approx": "--", "p4 28 rpp": "-.",
        "p4 28 relaxed": "-."}
    assert lines["p4 28 rpp"].get_ydata()[0] == pytest.approx(95.6)  # mnist5k's mean over seeds, in points


def test_relaxation_gain_plots_each_arms_gain_against_its_equivariance_error_one_colour_per_arm():
    from equisweep.pipeline.report.verdict import verdict_table

    results, _ = _relaxed_tables()
    table = verdict_table(results).table
    colours = arms.colours(results)
    fig = fg.relaxation_gain(table, colours=colours)
    assert [ax.get_title() for ax in fig.axes] == ["upright", "orbit", "mean over angles", "min over angles"]
    upright = fig.axes[0]
    assert upright.get_xscale() == "log"
    points = {bars.get_label(): bars.lines[0] for bars in upright.containers}
    assert set(points) == {f"{arm} · dataset={d}" for arm in ("p4 29 approx", "p4 28 relaxed", "p4 28 rpp")
                           for d in ("mnist5k", "mnist6-180")}
    rpp = points["p4 28 rpp · dataset=mnist5k"]
    assert rpp.get_xdata()[0] == pytest.approx(0.2 * 1.1)  # the mean eq_error over its seeds
    assert rpp.get_ydata()[0] == pytest.approx(5.0)  # 95 - 90 points: its gain over p4 28 exact (same size)
    approx = points["p4 29 approx · dataset=mnist5k"]
    assert approx.get_ydata()[0] == pytest.approx(-3.0)  # against p4 29 adaptive exact, not p4 28 exact
    assert {label.split(" · ")[0]: line.get_color() for label, line in points.items()} == {
        arm: colours[arm] for arm in ("p4 29 approx", "p4 28 relaxed", "p4 28 rpp")}
    assert len({line.get_color() for line in points.values()}) == 3
    assert {line.get_marker() for label, line in points.items() if "mnist5k" in label} != {
        line.get_marker() for label, line in points.items() if "mnist6-180" in label}  # a marker per condition
    with pytest.raises(UserError, match="relaxation_gain: no compared arm has a measured equivariance error"):
        fg.relaxation_gain(table.assign(arm_eq_error=np.nan))
