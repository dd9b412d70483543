"""Arms of a study: what a run *is* (its network at its input size), named the same way in W&B, tables and figures.

An arm is (model, group, input size) with its static verdict: ``p4 28 exact``, ``p4 29 approx``; a trivial group
is neither exact nor approximate, so a z2 net is the ``plain CNN 28`` (its ``exact`` is None: not applicable).
"""

from __future__ import annotations

TRIVIAL_GROUPS = frozenset({"z2", "c1"})  # the native and the e2cnn spelling of the trivial group


def is_trivial(group: object) -> bool:
    return str(group) in TRIVIAL_GROUPS


def arm_label(group: str, input_size: int, exact: bool | None) -> str:
    """``p4 28 exact``, ``p4 29 approx`` or ``plain CNN 28``."""
    if is_trivial(group) or exact is None:
        return f"plain CNN {input_size}" if is_trivial(group) else f"{group} {input_size}"
    return f"{group} {input_size} {'exact' if exact else 'approx'}"
