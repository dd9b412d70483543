"""The report's words about the verdict: the verdict table as strings and Markdown, the winners, the summary in plain
English, the definitions of the metrics and of the verdict table (the figures' captions are in ``captions``).

Accuracies are fractions in the verdict table and accuracy points (fraction x 100) here."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from equisweep.pipeline.report.arms import APPROX
from equisweep.pipeline.report.comparison import MIN_SEEDS_FOR_INTERVAL, NOT_APPLICABLE, PERMUTED, SPAN
from equisweep.pipeline.report.stats import POWER, smallest_permutation_p
from equisweep.pipeline.report.verdict import (
    ALL_TRIALS,
    APPROX_WINS,
    EXACT_WINS,
    INCONCLUSIVE,
    PAPERS_PAIR,
    REFERENCE,
    Verdicts,
    arm_wins,
    count_of,
    format_value,
)


def display_table(verdicts: Verdicts) -> pd.DataFrame:
    """The verdict table as the report shows it (strings), in table order: condition columns, metric, the arm and
    its mean ± std (n), the exact arm (with the rule that picked it: same size, paper's pair or nearest exact size)
    and its mean ± std (n), diff [CI] and p (adjusted), the detectable difference (``more seeds needed (≥ N)`` where
    these seeds detect none within 100 points) and the seeds per arm to detect ``diff`` (accuracy points), verdict.
    A reference row leaves the exact side empty; a metric neither arm has reads n/a.
    ``attrs["right"]`` names the columns of numbers (right-aligned)."""
    level = f"{verdicts.confidence * 100:g}%"
    numbers = ["mean ± std (n)", "exact mean ± std (n)", f"diff [{level} CI] (points)", "p (adj.)",
               "detectable (points)", "seeds/arm for diff"]
    header = [*verdicts.conditions, "metric", "arm", numbers[0], "exact arm", *numbers[1:], "verdict"]
    rows = []
    for row in verdicts.table.itertuples(index=False):
        cells = [format_value(value) for value in row[:len(verdicts.conditions)]]
        arm = _arm(row.arm_mean, row.arm_std, row.arm_n)
        if not row.exact_arm:
            rows.append([*cells, row.label, row.arm, arm, "", "", "", "", "", "", row.verdict])
            continue
        rows.append([*cells, row.label, row.arm, arm, f"{row.exact_arm} ({row.reference})",
                     _arm(row.exact_mean, row.exact_std, row.exact_n), _diff(row), _p(row.p_adjusted),
                     _detectable(row), _seeds(row.seeds_needed), row.verdict])
    frame = pd.DataFrame(rows, columns=header)
    frame.attrs["right"] = numbers
    return frame


NO_WINNER = "no arm beats the exact reference"
NEGLIGIBLE = 0.01  # accuracy differences below one point are not worth more seeds to resolve
WINNERS_INTRO = ("Which arm wins, per condition and metric: the arm that beats its exact reference (same size, else "
                 "the nearest; never the paper's pair) by the largest difference after the Holm correction, or "
                 f"{NO_WINNER!r}; beside it the arm of largest difference, winner or not, against its reference.")


def winners_display(verdicts: Verdicts) -> pd.DataFrame:
    """Per condition and metric (table order), which arm wins: the winning arm of largest ``diff``, or ``NO_WINNER``;
    and the arm of largest ``diff`` (the winner where there is one) with its reference, ``diff [CI]`` and adjusted p.
    Reference rows, the paper's-pair rows and metrics undefined for the data are left out.
    ``attrs["right"]`` names the columns of numbers."""
    level = f"{verdicts.confidence * 100:g}%"
    table = verdicts.table
    rows = table[~table["verdict"].isin([REFERENCE, NOT_APPLICABLE]) & (table["reference"] != PAPERS_PAIR)]
    numbers = [f"diff [{level} CI] (points)", "p (adj.)"]
    shown = []
    for (condition, _), group in rows.groupby(["condition", "metric"], sort=False):
        won = group[group["verdict"] == [arm_wins(method) for method in group["method"]]]
        best = next((won if len(won) else group).sort_values("diff", ascending=False, kind="stable")
                    .itertuples(index=False))
        shown.append([condition, best.label, best.arm if len(won) else NO_WINNER, best.arm,
                      f"{best.exact_arm} ({best.reference})", _diff(best), _p(best.p_adjusted)])
    frame = pd.DataFrame(shown, columns=["condition", "metric", "winner", "largest difference", "exact arm",
                                         *numbers])
    frame.attrs["right"] = numbers
    return frame


def _diff(row: Any) -> str:
    """``+1.23 [-0.40, +2.86]``; without its interval where an arm has too few seeds for one to mean anything."""
    if row.verdict == NOT_APPLICABLE:
        return NOT_APPLICABLE
    if math.isnan(row.ci_low):
        return _points(row.diff, signed=True)
    if _too_few_for_interval(row):
        return f"{_points(row.diff, signed=True)} (too few seeds for an interval)"
    return f"{_points(row.diff, signed=True)} [{_points(row.ci_low, signed=True)}, {_points(row.ci_high, signed=True)}]"


def _detectable(row: Any) -> str:
    if not math.isnan(row.seeds_to_detect):
        return f"more seeds needed (≥ {_seeds(row.seeds_to_detect)})"
    return _points(row.detectable)


def _too_few_for_interval(row: Any) -> bool:
    return min(row.arm_n, row.exact_n) < MIN_SEEDS_FOR_INTERVAL


def _no_interval(row: Any) -> str:
    return f"no interval: {min(row.arm_n, row.exact_n)} seeds in an arm are too few for one"


def markdown_table(frame: pd.DataFrame, right: Iterable[str] = ()) -> str:
    """A pipe table of ``frame`` (hand-formatted, no ``tabulate``); columns in ``right`` align right."""
    right = set(right)
    lines = [_md_row(list(frame.columns)), _md_row(["---:" if c in right else "---" for c in frame.columns])]
    lines += [_md_row([format_value(v) for v in row]) for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def to_markdown(verdicts: Verdicts) -> str:
    """The verdict table as Markdown (numbers right-aligned)."""
    table = display_table(verdicts)
    return markdown_table(table, right=table.attrs["right"])


def summary_paragraph(verdicts: Verdicts) -> str:
    """Plain English from the table: the count of each verdict; per condition, which arms win, lose or tie against
    which reference; per condition and arm, which metrics favour it or its reference and by how many accuracy points
    (with the interval), which are inconclusive and what these seeds could detect, which could not be tested and
    why; the plain CNN's accuracy; how many more seeds the sweep needs."""
    table = verdicts.table
    undefined = table[table["verdict"] == NOT_APPLICABLE]
    compared = table[~table["verdict"].isin([REFERENCE, NOT_APPLICABLE])]
    level = f"{verdicts.confidence * 100:g} %"
    sentences = []
    if compared.empty:
        sentences.append("No condition has finished trials of both an exact reference and another arm, so "
                         "there is nothing to compare.")
    else:
        counts = compared["verdict"].value_counts()
        tested = int(compared["p_value"].notna().sum())
        untested = len(compared) - tested
        what = "Approximate" if (compared["method"] == APPROX).all() else "Each arm"
        if tested:
            words = [APPROX_WINS, *sorted({arm_wins(method) for method in compared["method"]} - {APPROX_WINS}),
                     EXACT_WINS, INCONCLUSIVE]
            lead = (f"{what} minus exact accuracy, per condition, arm and metric ({_tests(compared)} over "
                    f"seeds, Holm-adjusted at alpha = {verdicts.alpha:g}): "
                    + ", ".join(f"{counts.get(word, 0)} {word}" for word in words))
            if untested:
                lead += f" ({untested} of them not tested)"
        else:
            lead = (f"{what} minus exact accuracy, per condition, arm and metric: none of the {len(compared)} "
                    f"comparisons could be tested, so all are {INCONCLUSIVE}")
        sentences.append(lead + ".")
        for label, group in compared.groupby("condition", sort=False):
            sentences.append(_outcome_sentence(label, group))
        for (label, _, _), group in compared.groupby(["condition", "arm", "exact_arm"], sort=False):
            sentences.append(_arm_sentence(label, group, level))
        sentences.append(_seeds_sentence(verdicts))
    for label, group in undefined.groupby("condition", sort=False):
        where = "over all trials" if label == ALL_TRIALS else f"under {label}"
        metrics = _join(dict.fromkeys(group["label"]))
        sentences.append(f"Not applicable {where}: {metrics} (neither arm has the metric: undefined for these data), "
                         "never compared.")
    for (label, arm), group in table[table["verdict"] == REFERENCE].groupby(["condition", "arm"], sort=False):
        where = "over all trials" if label == ALL_TRIALS else f"under {label}"
        group = group[group["arm_n"] > 0]  # a metric undefined for these data is not reached, nor missed
        if len(group):
            sentences.append(f"Reference, not tested: the {arm} ({count_of(int(group['arm_n'].max()), 'seed')}) "
                             "reaches " + _join(f"{row.arm_mean * 100:.1f} points {row.label}"
                                                for row in group.itertuples()) + f" {where}.")
    sentences += verdicts.skipped
    sentences += verdicts.notes
    return " ".join(sentence for sentence in sentences if sentence)


def verdict_intro(verdicts: Verdicts, context: str) -> str:
    """What the verdict table shows and how to read it; ``context`` says dataset, epochs and seeds."""
    permuted = " (an exact permutation test where an arm does not vary)" if (
        verdicts.table["note"] == PERMUTED).any() else ""
    papers = (f" and, for an approximate arm, also the exact arm of the nearest other size ({PAPERS_PAIR}, as the "
              "paper compares them)" if (verdicts.table["reference"] == PAPERS_PAIR).any() else "")
    return (f"Each arm (an equivariant network at an input size where it is only approximately "
            f"equivariant, a relaxed one, or any network behind an invariance wrapper or trained with an "
            f"equivariance penalty) against the exact reference of its condition, per metric: the exact, unrelaxed, "
            f"unwrapped and unpenalised arm of the same input size where there is one (same size){papers}, else of "
            f"the nearest size (nearest exact size); the plain CNN alone as a reference row, never tested. "
            f"{context}. Accuracies in points; diff is the arm minus the exact arm with its "
            f"{verdicts.confidence:.0%} confidence interval (Welch; clipped to ±{SPAN * 100:.0f}, and left out "
            f"where an arm has fewer than {MIN_SEEDS_FOR_INTERVAL} seeds); p is "
            f"Welch's t-test over seeds{permuted} after the Holm correction across the table; a winner needs p < "
            f"{verdicts.alpha:g}, else the row is inconclusive: no difference was shown, which does not "
            f"mean there is none; {NOT_APPLICABLE}: neither arm has the metric. detectable: the smallest difference "
            f"these seeds detect with {POWER:.0%} power (more seeds needed (≥ N) where they detect none within "
            f"{SPAN * 100:.0f} points: N seeds per arm would); seeds/arm for diff: the seeds per arm that would "
            f"detect the observed difference with {POWER:.0%} power (∞ when it is exactly 0); both at the per-test "
            f"level alpha over the number of tests (Holm's strictest step){_level(verdicts)}.")


def metric_definitions(angles: pd.DataFrame) -> str:
    """Every metric the report shows, in plain words, once."""
    tested = sorted(angles["angle"].dropna().unique()) if "angle" in angles else []
    where = (f"the {len(tested)} test rotations ({', '.join(f'{a:g}°' for a in tested)})" if 0 < len(tested) <= 12
             else f"the {len(tested)} test rotations" if tested else "the test rotations")
    return ("upright: accuracy on the test images as they are. orbit: mean accuracy over the test images turned by "
            "each of the group's symmetries of the pixel grid (the four quarter turns, with their mirror images for "
            f"p4m). mean over angles and min over angles: the mean and the lowest accuracy over {where}, each image "
            "rotated by interpolation. eq_error: measured relative equivariance error, "
            "||g·f(x) − f(g·x)|| / ||f(x)|| for the network's output f on test images x, worst over the group's "
            "pixel-grid symmetries g; per layer in the last figure. 0 means exactly equivariant, 1 an error as "
            "large as the output. Accuracies are shown in points (percent); all are measured on the test set, "
            "with the checkpoint chosen on upright validation accuracy.")


def _level(verdicts: Verdicts) -> str:
    return f", here {verdicts.level:.2g}" if verdicts.level == verdicts.level else ", here no test was possible"


def _outcome_sentence(label: str, group: pd.DataFrame) -> str:
    """``Under <condition>: p4 28 rpp wins (upright, orbit) and p4 28 partial ties against p4 28 exact (same size);
    ...``: per reference, each arm wins (only it wins on some metric), loses (only its reference does), trades
    (each wins on some metric), ties (tested, and no metric shows a difference) or is not tested (no metric could be:
    its means stand alone, and a +50-point gap is no tie)."""
    parts = []
    for (reference, rule), against in group.groupby(["exact_arm", "reference"], sort=False):
        outcomes = []
        for arm, rows in against.groupby("arm", sort=False):
            won = list(rows.loc[rows["verdict"] == arm_wins(rows["method"].iloc[0]), "label"])
            lost = list(rows.loc[rows["verdict"] == EXACT_WINS, "label"])
            if won and lost:
                outcomes.append(f"{arm} trades (wins on {', '.join(won)}, loses on {', '.join(lost)})")
            elif won or lost:
                outcomes.append(f"{arm} {'wins' if won else 'loses'} ({', '.join(won or lost)})")
            elif rows["p_value"].isna().all():
                outcomes.append(f"{arm} is not tested (means only)")
            else:
                outcomes.append(f"{arm} ties ({INCONCLUSIVE} on every metric)")
        parts.append(f"{_join(outcomes)} against {reference} ({rule})")
    where = "Over all trials" if label == ALL_TRIALS else f"Under {label}"
    return f"{where}: {'; '.join(parts)}."


def _arm_sentence(label: str, group: pd.DataFrame, level: str) -> str:
    first = group.iloc[0]
    arms = (f"{first.arm} ({count_of(int(group['arm_n'].max()), 'seed')}) vs {first.exact_arm} "
            f"({count_of(int(group['exact_n'].max()), 'seed')}, {first.reference})")
    approximate = first.method == APPROX
    wins = arm_wins(first.method)
    parts = []
    for verdict, who in ((wins, "the approximate network" if approximate else f"the {first.method} network"),
                         (EXACT_WINS, "the exact network")):
        rows = group[group["verdict"] == verdict]
        if len(rows):
            sign = 1 if verdict == wins else -1
            parts.append(f"{who} is better on " + _join(
                f"{row.label} by {sign * row.diff * 100:.1f} points ({_interval(row, sign, level)})"
                for row in rows.itertuples()))
    open_rows = group[(group["verdict"] == INCONCLUSIVE) & group["p_value"].notna()]
    if len(open_rows):
        parts.append("no difference is shown on " + _join(
            f"{row.label} ({row.diff * 100:+.1f} points, {_open_words(row)})" for row in open_rows.itertuples()))
    untested = group[group["p_value"].isna()]
    for note, rows in untested.groupby("note", sort=False):
        parts.append(f"{note}: {'approximate' if approximate else first.method} minus exact is " + _join(
            f"{row.diff * 100:+.1f} points on {row.label}" for row in rows.itertuples()))
    where = "Over all trials" if label == ALL_TRIALS else f"Under {label}"
    return f"{where}, {arms}: {'; '.join(parts)}."


def _seeds_sentence(verdicts: Verdicts) -> str:
    more, worst, smaller = more_seeds(verdicts)
    if worst.empty:
        return (f"Every inconclusive difference observed here is below {NEGLIGIBLE * 100:g} point: no more seeds are "
                "worth spending on them.") if smaller else ""
    row = next(worst.itertuples())
    where = "" if row.condition == ALL_TRIALS else f" under {row.condition}"
    left_out = (f" ({smaller} smaller inconclusive difference{'s' if smaller > 1 else ''}, below "
                f"{NEGLIGIBLE * 100:g} point, left out)" if smaller else "")
    return (f"To detect each inconclusive difference of {NEGLIGIBLE * 100:g} point or more observed here with "
            f"{POWER:.0%} power (per-test level {verdicts.level:.2g}), the sweep needs {_seeds(more)} more seeds per "
            f"arm: {_seeds(row.seeds_needed)} per arm for {row.arm} vs {row.exact_arm} on {row.label}{where} "
            f"({row.diff * 100:+.2f} points){left_out}.")


def more_seeds(verdicts: Verdicts) -> tuple[float, pd.DataFrame, int]:
    """How many more seeds per arm the sweep needs so that every inconclusive row tested by Welch's test, with an
    observed difference of at least ``NEGLIGIBLE``, would detect it (80 % power): the largest
    ``seeds_needed - min(arm_n, exact_n)`` over those rows (0 when none is short), the row that needs it, and how
    many inconclusive rows were left out for a smaller difference (such rows would ask for thousands of seeds to
    show what matters to no one)."""
    table = verdicts.table
    open_rows = table[(table["verdict"] == INCONCLUSIVE) & table["p_value"].notna() & table["seeds_needed"].notna()]
    rows = open_rows[open_rows["diff"].abs() >= NEGLIGIBLE]
    if rows.empty:
        return 0.0, rows, len(open_rows)
    short = rows["seeds_needed"] - np.minimum(rows["arm_n"], rows["exact_n"])
    worst = short.idxmax()
    return max(0.0, float(short[worst])), rows.loc[[worst]], len(open_rows) - len(rows)


def _points(fraction: float, signed: bool = False) -> str:
    if math.isnan(fraction):
        return "–"
    return f"{fraction * 100:+.2f}" if signed else f"{fraction * 100:.2f}"


def _arm(mean: float, std: float, n: int) -> str:
    if n == 0:
        return NOT_APPLICABLE
    if math.isnan(std):
        return f"{_points(mean)} ({n})"
    return f"{_points(mean)} ± {_points(std)} ({n})"


def _p(p: float) -> str:
    if math.isnan(p):
        return "–"
    return "<1e-4" if p < 1e-4 else f"{p:.2g}"


def _seeds(n: float) -> str:
    return "–" if math.isnan(n) else "∞" if math.isinf(n) else f"{n:.0f}"


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"


def _interval(row: Any, sign: int, level: str) -> str:
    """The interval of a row, turned to the winner's side (``sign``); a permutation test has none, nor an arm with
    too few seeds for one to mean anything."""
    if row.note == PERMUTED:
        return f"exact permutation test, p = {row.p_value:.2g}"
    if _too_few_for_interval(row):
        return _no_interval(row)
    low, high = (row.ci_low, row.ci_high) if sign > 0 else (row.ci_high, row.ci_low)
    return f"{level} CI {sign * low * 100:.1f} to {sign * high * 100:.1f}"


def _open_words(row: Any) -> str:
    """An inconclusive row's test: the permutation test's p before and after Holm's correction (and whether these
    seeds could give a smaller one), else the interval and what these seeds detect."""
    if row.note == PERMUTED:
        words = f"exact permutation test, p = {row.p_value:.2g}, {_p(row.p_adjusted)} after Holm's correction"
        if row.p_value <= smallest_permutation_p(int(row.arm_n), int(row.exact_n)) * (1 + 1e-9):
            words += f"; {int(row.arm_n)} and {int(row.exact_n)} seeds can give no smaller p: more seeds needed"
        return words
    interval = (_no_interval(row) if _too_few_for_interval(row) else
                f"CI {row.ci_low * 100:+.1f} to {row.ci_high * 100:+.1f}")
    if not math.isnan(row.seeds_to_detect):
        return (f"{interval}; these seeds detect no difference within {SPAN * 100:.0f} points, "
                f"{_seeds(row.seeds_to_detect)} seeds per arm would")
    return f"{interval}; these seeds detect {row.detectable * 100:.1f} points"


def _tests(compared: pd.DataFrame) -> str:
    """``12 Welch t-tests``, or with exact permutation tests for arms that do not vary: ``10 Welch t-tests and 2
    exact permutation tests``."""
    tested = compared["p_value"].notna()
    permuted = int((tested & (compared["note"] == PERMUTED)).sum())
    welch = int(tested.sum()) - permuted
    words = [f"{welch} Welch t-tests" if welch or not permuted else "", f"{permuted} exact permutation tests"
             if permuted else ""]
    return " and ".join(word for word in words if word)


def _join(items: Iterable[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
