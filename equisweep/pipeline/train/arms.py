"""Arms of a study: what a run *is* (its network at its input size), named the same way in W&B, tables and figures.

An arm is (model, group, relaxation, subsampling, input size) with its static verdict: ``p4 28 exact``, ``p4 29
approx``, ``p4 29 adaptive exact``, ``p4 28 rpp``; a trivial group is neither exact nor approximate, so a z2 net is the
``plain CNN 28`` (its ``exact`` is None: not applicable). The defaults (relaxation ``none``, subsampling ``stride``)
are left out of the name, so the names of the original arms never change. The report's arms
(``equisweep.pipeline.report.arms``) are labelled by this same function.
"""

from __future__ import annotations

TRIVIAL_GROUPS = frozenset({"z2", "c1"})  # the native and the e2cnn spelling of the trivial group
NO_RELAXATION, STRIDE = "none", "stride"  # the defaults, which an arm's name leaves out


def is_trivial(group: object) -> bool:
    return str(group) in TRIVIAL_GROUPS


def arm_label(group: str, input_size: int, exact: bool | None, relaxation: str = NO_RELAXATION,
              subsampling: str = STRIDE) -> str:
    """``p4 28 exact``, ``p4 29 approx``, ``p4 29 adaptive exact``, ``p4 28 rpp`` or ``plain CNN 28``.

    A relaxed arm is named by its relaxation instead of exact/approx: its static verdict holds only while its relaxed
    parameters are tied, which training undoes."""
    trivial = is_trivial(group)
    words = ["plain CNN" if trivial else str(group), str(input_size)]
    if subsampling != STRIDE:
        words.append(str(subsampling))
    if relaxation != NO_RELAXATION:
        words.append(str(relaxation))
    elif not trivial and exact is not None:
        words.append("exact" if exact else "approx")
    return " ".join(words)
