"""What each family of relaxation learned, as the report shows it: the ``family/<name>`` diagnostics a sweep stores
(augerino's learned range, the canonicaliser's choices, the orbit penalty's change) per family arm and condition.

The arms are labelled and the conditions chosen as the verdict does (``arms.by_arm``, ``verdict.condition_columns``),
so a row here names the same arm as its rows in the verdict table. Each diagnostic is its mean over seeds with
[min–max]; the canonicaliser's choice histogram (one ``family/chosen_<element>`` column per group element) is one
cell of mean fractions.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import pandas as pd

from equisweep.pipeline import vocabulary as m
from equisweep.pipeline.report import arms
from equisweep.pipeline.report.verdict import by_condition, condition_columns, format_value

FAMILY_TITLE = "What the families learned"
CHOSEN = f"{m.FAMILY_PREFIX}chosen_"  # the canonicaliser's fraction of images turned back by each element
HISTOGRAM = "chosen (fraction of images, mean over seeds)"
SEEDS = "seeds"
# how to read each diagnostic, by its name without the prefix (``chosen`` for the whole histogram)
READING: Mapping[str, str] = MappingProxyType({
    "range_deg": "range_deg (augerino): the learned range θ in degrees; training turns each image by an angle drawn "
                 "from [−θ, θ], so 0 is no augmentation and 180 the full circle (the net pushed toward invariance "
                 "under every rotation).",
    "chosen": "chosen (canonicalize): the fraction of the images the canonicaliser turned back by each group element "
              "(r0 the identity, r90 a quarter turn, a trailing m mirrored); the images are upright, so a "
              "canonicaliser that always picks r0 does nothing to them, and a spread over the elements means the "
              "backbone sees upright images turned.",
    "orbit_change": "orbit_change (eq_penalty): the orbit penalty's mean over every non-identity group element, the "
                    "squared change of the softmax (summed over classes, mean over images) when the input is "
                    "transformed: how much the output still changes under the group, 0 for an invariant net, 2 at "
                    "most.",
})


def family_blocks(results: pd.DataFrame) -> list[tuple[str, object]]:
    """The report's blocks for the families' diagnostics: how to read them and the table; none for a sweep without a
    ``family/`` column or without a finished family arm."""
    table = diagnostics_display(results)
    if table.empty:
        return []
    intro = ("What each family arm learned, per condition, measured at its best checkpoint on the same upright test "
             "images as eq_error: the mean over seeds with [min–max] (group averaging learns nothing of its own, so "
             "its arms are not shown).")
    readings = [READING[name] for name in table.attrs["diagnostics"] if name in READING]
    return [("p", " ".join([intro, *readings])), ("table", (table, table.attrs["right"]))]


def diagnostics_display(results: pd.DataFrame) -> pd.DataFrame:
    """One row per family arm and condition (verdict order): the condition columns, the arm's label, its seeds, each
    scalar diagnostic as ``mean [min–max]`` and the choice histogram as ``r0 0.62, r90 0.10, ...``; an arm without a
    diagnostic (group averaging) and a diagnostic no family arm has are left out. Empty without a ``family/`` column
    or a finished family arm. ``attrs["right"]`` names the columns of numbers, ``attrs["diagnostics"]`` the
    diagnostics shown (``chosen`` for the histogram)."""
    diagnostics = [column for column in results.columns if column.startswith(m.FAMILY_PREFIX)]
    table = arms.with_arm_defaults(arms.finished(results))  # the backbone's verdict is read off the unwrapped rows
    family = table[arms.is_family(table)]
    if not diagnostics or family.empty:
        return pd.DataFrame()
    conditions = condition_columns(results)
    options = arms.option_columns(table)
    # as the verdict judges them: under the group the family acts with, labelled with the backbone's
    family = family.assign(**{arms.BACKBONE_GROUP: family["group"], "group": arms.judged_group(family)})
    chosen = [column for column in diagnostics if column.startswith(CHOSEN) and family[column].notna().any()]
    scalars = [column for column in diagnostics if not column.startswith(CHOSEN) and family[column].notna().any()]
    rows = [[*(format_value(value) for value in key), arms.label(arm.settings), len(trials),
             *(_spread(trials[column]) for column in scalars), *([_histogram(trials[chosen])] if chosen else [])]
            for key, condition in by_condition(family, conditions)
            for arm, trials in arms.by_arm(condition, options)
            if trials[scalars + chosen].notna().any(axis=None)]  # group averaging learns nothing of its own
    numbers = [SEEDS, *(f"{column.removeprefix(m.FAMILY_PREFIX)} mean [min–max]" for column in scalars)]
    frame = pd.DataFrame(rows, columns=[*conditions, "arm", *numbers, *([HISTOGRAM] if chosen else [])])
    frame.attrs["right"] = numbers
    frame.attrs["diagnostics"] = [column.removeprefix(m.FAMILY_PREFIX) for column in scalars] + (
        ["chosen"] if chosen else [])
    return frame


def _spread(values: pd.Series) -> str:
    """``12.3 [10.1–14.5]`` over the seeds that have the diagnostic; one seed's value alone, ``–`` for none."""
    values = values.dropna().astype(float)
    if values.empty:
        return "–"
    if len(values) == 1:
        return f"{values.iloc[0]:.3g}"
    return f"{values.mean():.3g} [{values.min():.3g}–{values.max():.3g}]"


def _histogram(fractions: pd.DataFrame) -> str:
    """``r0 0.62, r90 0.10, r180 0.18, r270 0.10``: each element's mean fraction over seeds, in the group's order."""
    means = fractions.astype(float).mean()
    return ", ".join(f"{column.removeprefix(CHOSEN)} {mean:.2f}" for column, mean in means.items()
                     if pd.notna(mean)) or "–"
