"""The families of relaxation in the report: an arm includes its wrapper, penalty and telling options; only exact,
unrelaxed, unwrapped, unpenalised arms are references; each family arm, even a plain CNN's, is compared with the
exact reference of its condition; the winners table; what each family learned (synthetic tables, no Ray, no
training)."""

import math

import numpy as np
import pandas as pd

from equisweep.pipeline.report import arms
from equisweep.pipeline.report import family_table as ft
from equisweep.pipeline.report import text as tx
from equisweep.pipeline.report import verdict as v
from equisweep.pipeline.vocabulary import FAMILY_PREFIX, arm_label, backbone_verdicts, method_options

SEEDS = 4
# (group, input size, static verdict, settings) per arm; a wrapper's verdict is the wrapper's, a penalty keeps its
# architecture's
FAMILY_ARMS = [
    ("p4", 28, True, {}),
    ("p4", 29, False, {}),
    ("p4", 29, True, {"subsampling": "adaptive"}),
    ("p4", 28, True, {"relaxation": "rpp"}),
    ("z2", 29, True, {"invariance": "average"}),
    ("p4", 29, True, {"invariance": "average"}),
    ("z2", 28, True, {"invariance": "canonicalize", "invariance_beta": 1.0}),
    ("z2", 28, None, {"invariance": "augerino", "invariance_samples": 8}),
    ("z2", 28, None, {"eq_penalty": 0.1}),
    ("z2", 28, None, {"eq_penalty": 1.0}),
    ("z2", 28, None, {"eq_penalty": 0.1, "eq_penalty_kind": "lie"}),
    ("z2", 28, None, {}),
]
LABELS = ["p4 28 exact", "p4 29 approx", "p4 29 adaptive exact", "p4 28 rpp", "plain CNN 29 average",
          "p4 29 approx average", "plain CNN 28 canonicalize", "plain CNN 28 augerino", "plain CNN 28 eq_penalty=0.1",
          "plain CNN 28 eq_penalty=1", "plain CNN 28 eq_penalty=0.1 lie", "plain CNN 28"]


def family_table(regimes=("none",), gains=None, seeds=SEEDS) -> pd.DataFrame:
    """One row per arm, regime and seed, as a sweep writes them (every arm has every family column, at its default
    where it does not use it); ``gains``: {(regime, arm index): accuracy over 0.9}."""
    rng = np.random.default_rng(0)
    rows = []
    for regime in regimes:
        for index, (group, size, exact, settings) in enumerate(FAMILY_ARMS):
            for seed in range(seeds):
                accuracy = 0.9 + (gains or {}).get((regime, index), 0.0) + rng.normal(0, 0.002)
                rows.append({"trial_id": f"t{len(rows)}", "cell": len(rows) // seeds, "status": "finished",
                             "dataset": "mnist69", "model": "p4cnn", "group": group, "input_size": size,
                             "train_symmetry": regime, "seed": seed, "relaxation": "none", "subsampling": "stride",
                             "invariance": "none", "eq_penalty": 0.0, "eq_penalty_kind": "orbit", **settings,
                             "exact": exact, **{metric: accuracy for metric in v.REPORT_METRICS},
                             "val_acc": accuracy, "eq_error": 0.0 if exact else 0.1})
    return pd.DataFrame(rows)


def test_each_family_arm_is_named_by_its_wrapper_and_penalty_and_its_backbone_word():
    table = arms.finished_arms(family_table())
    columns = arms.arm_columns(table)
    labels = [arms.label(dict(zip(columns, key))) for key in arms.arms(table, columns)]
    assert sorted(labels) == sorted(LABELS)
    # the averaged p4 29 is exact, its backbone is not: the label names the backbone's verdict
    assert backbone_verdicts([{"group": "p4", "input_size": 29, "exact": False, "invariance": "none"},
                              {"group": "p4", "input_size": 29, "exact": True, "invariance": "average"},
                              {"group": "p4", "input_size": 27, "exact": True, "invariance": "average"}]) == [
        False, False, None]
    assert arm_label("p4", 29, None, invariance="average") == "p4 29 average"  # backbone not known: no word
    assert arms.linestyle({"group": "z2", "invariance": "average"}) == "-."
    assert arms.linestyle({"group": "z2", "invariance": "none", "eq_penalty": 0.0}) == ":"


def test_only_exact_unwrapped_unpenalised_arms_are_references_and_each_family_arm_meets_its_own():
    verdicts = v.verdict_table(family_table())
    table = verdicts.table
    assert verdicts.conditions == []  # the plain CNN's families are judged under p4: no group condition
    compared = table[table["verdict"] != v.REFERENCE].drop_duplicates(["arm", "exact_arm"])
    pairs = list(zip(compared["arm"], compared["exact_arm"], compared["reference"]))
    assert pairs == [
        ("p4 29 approx", "p4 29 adaptive exact", "same size"), ("p4 29 approx", "p4 28 exact", "paper's pair"),
        ("p4 28 rpp", "p4 28 exact", "same size"),
        ("plain CNN 28 augerino", "p4 28 exact", "same size"),
        ("plain CNN 29 average", "p4 29 adaptive exact", "same size"),
        ("p4 29 approx average", "p4 29 adaptive exact", "same size"),
        ("plain CNN 28 canonicalize", "p4 28 exact", "same size"),
        ("plain CNN 28 eq_penalty=0.1", "p4 28 exact", "same size"),
        ("plain CNN 28 eq_penalty=0.1 lie", "p4 28 exact", "same size"),
        ("plain CNN 28 eq_penalty=1", "p4 28 exact", "same size")]
    assert dict(zip(compared["arm"], compared["method"]))["plain CNN 28 eq_penalty=1"] == "eq_penalty"
    assert set(table.loc[table["verdict"] == v.REFERENCE, "arm"]) == {"plain CNN 28"}  # unwrapped: a reference row
    assert not any("without a static exact flag" in note for note in verdicts.notes)  # augerino is measured only
    assert any("plain CNN (z2) trials (4) are never tested" in note for note in verdicts.notes)


def test_an_option_alone_makes_arms_and_names_them():
    table = family_table()
    table["relaxation_free_wd"] = np.where(table["relaxation"] == "rpp", 1.0, np.nan)
    canonical = table[table["invariance"] == "canonicalize"].assign(invariance_beta=0.0, cell=lambda t: t["cell"] + 100)
    rpp = table[table["relaxation"] == "rpp"].assign(relaxation_free_wd=0.1, cell=lambda t: t["cell"] + 200)
    table = pd.concat([table, canonical, rpp], ignore_index=True)
    assert method_options(table.to_dict("records"), ("relaxation", "invariance")) == ["relaxation_free_wd",
                                                                                        "invariance_beta"]
    arms_compared = set(v.verdict_table(table).table["arm"])
    assert {"p4 28 rpp free_wd=1", "p4 28 rpp free_wd=0.1", "plain CNN 28 canonicalize beta=1",
            "plain CNN 28 canonicalize beta=0"} <= arms_compared
    # an option one method holds at one value throughout names nothing: augerino's samples
    assert "plain CNN 28 augerino" in arms_compared
    assert "invariance_beta" not in v.verdict_table(table).conditions


def test_the_winners_table_names_the_best_winning_arm_per_condition_or_none():
    gains = {("c4", 6): 0.05, ("c4", 8): 0.02}  # under c4, canonicalize and the penalty win; under none nothing
    verdicts = v.verdict_table(family_table(regimes=("none", "c4"), gains=gains, seeds=8))
    shown = tx.winners_display(verdicts)
    upright = shown[shown["metric"] == "upright"].set_index("condition")
    assert upright.loc["train_symmetry=c4", "winner"] == "plain CNN 28 canonicalize"
    assert upright.loc["train_symmetry=c4", "exact arm"] == "p4 28 exact (same size)"
    low, high = (float(x) for x in upright.loc["train_symmetry=c4", "diff [95% CI] (points)"]
                 .split("[")[1].rstrip("]").split(", "))
    assert low < 5 < high
    assert upright.loc["train_symmetry=none", "winner"] == tx.NO_WINNER
    upright_rows = verdicts.table[(verdicts.table["arm"] == "plain CNN 28 canonicalize")
                                  & (verdicts.table["metric"] == "test_acc_upright")].set_index("condition")
    assert upright_rows["verdict"].to_dict() == {"train_symmetry=none": "inconclusive",
                                                 "train_symmetry=c4": "canonicalize wins"}
    assert math.isclose(upright_rows.loc["train_symmetry=c4", "diff"], 0.05, abs_tol=0.005)
    assert "canonicalize wins" in tx.summary_paragraph(verdicts)


def _with_diagnostics(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with each family's diagnostics as a sweep stores them: augerino's range (a different spread per
    regime), the canonicaliser's choices (alternating between two histograms over seeds), the penalty's change."""
    augerino, canonical = table["invariance"] == "augerino", table["invariance"] == "canonicalize"
    penalised = table["eq_penalty"] > 0
    even = table["seed"] % 2 == 0
    return table.assign(**{
        f"{FAMILY_PREFIX}chosen_r0": np.where(canonical, np.where(even, 0.7, 0.5), np.nan),
        f"{FAMILY_PREFIX}chosen_r90": np.where(canonical, np.where(even, 0.1, 0.2), np.nan),
        f"{FAMILY_PREFIX}chosen_r180": np.where(canonical, np.where(even, 0.1, 0.2), np.nan),
        f"{FAMILY_PREFIX}chosen_r270": np.where(canonical, 0.1, np.nan),
        f"{FAMILY_PREFIX}range_deg": np.where(augerino, np.where(table["train_symmetry"] == "c4", 20.0, 1.0)
                                              + 10.0 * table["seed"], np.nan),
        f"{FAMILY_PREFIX}orbit_change": np.where(penalised, 0.001 * (table["seed"] + 1) / table["eq_penalty"],
                                                 np.nan)})


def test_what_the_families_learned_is_each_diagnostic_over_seeds_per_family_arm_and_condition():
    table = _with_diagnostics(family_table(regimes=("none", "c4")))
    blocks = ft.family_blocks(table)
    assert [kind for kind, _ in blocks] == ["p", "table"]
    intro, (shown, right) = blocks[0][1], blocks[1][1]
    assert all(word in intro for word in ("0 is no augmentation and 180 the full circle", "always picks r0 does "
                                          "nothing", "how much the output still changes under the group"))
    verdicts = v.verdict_table(table)
    assert list(shown.columns) == [*verdicts.conditions, "arm", "seeds", "range_deg mean [min–max]",
                                   "orbit_change mean [min–max]", ft.HISTOGRAM]
    assert list(right) == ["seeds", "range_deg mean [min–max]", "orbit_change mean [min–max]"]
    rows = shown.set_index(["train_symmetry", "arm"])
    # the verdict's arms and conditions, in its order; group averaging reports nothing and is left out
    verdict_arms = verdicts.table.loc[verdicts.table["method"].isin(
        ["augerino", "canonicalize", "eq_penalty"]), ["train_symmetry", "arm"]].drop_duplicates()
    assert list(rows.index) == list(verdict_arms.itertuples(index=False, name=None))
    assert rows.loc[("c4", "plain CNN 28 augerino"), "range_deg mean [min–max]"] == "35 [20–50]"  # 20, 30, 40, 50
    assert rows.loc[("none", "plain CNN 28 augerino"), "range_deg mean [min–max]"] == "16 [1–31]"
    assert rows.loc[("none", "plain CNN 28 augerino"), "orbit_change mean [min–max]"] == "–"
    assert rows.loc[("c4", "plain CNN 28 eq_penalty=1"), "orbit_change mean [min–max]"] == "0.0025 [0.001–0.004]"
    assert rows.loc[("c4", "plain CNN 28 eq_penalty=0.1 lie"), "orbit_change mean [min–max]"] == "0.025 [0.01–0.04]"
    assert rows.loc[("none", "plain CNN 28 canonicalize"), ft.HISTOGRAM] == "r0 0.60, r90 0.15, r180 0.15, r270 0.10"
    assert (rows["seeds"] == SEEDS).all()


def test_a_diagnostic_no_shown_arm_has_is_dropped_and_a_sweep_without_diagnostics_has_no_section():
    table = _with_diagnostics(family_table())
    without_augerino = table[table["invariance"] != "augerino"]
    shown = ft.diagnostics_display(without_augerino)
    assert "range_deg mean [min–max]" not in shown.columns and "orbit_change mean [min–max]" in shown.columns
    assert "range_deg" not in ft.family_blocks(without_augerino)[0][1]
    assert ft.family_blocks(family_table()) == []  # the same arms, no family/ column
    assert ft.family_blocks(table[~arms.is_family(arms.with_arm_defaults(table))]) == []  # no family arm
