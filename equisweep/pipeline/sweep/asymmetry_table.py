"""The measured asymmetry of a sweep's data (``equisweep.datamodules.asymmetry``), one row per condition, in
``<storage>/<name>/asymmetry.parquet``: how far each dataset, as each training regime shows it, is from invariant
under the group its arms are judged against.

A condition is a distinct ``(dataset, train_symmetry, group)`` of the sweep's cells, ``group`` the arm's reference
group by name (``measured_group``: the arm's own group, p4 for a plain CNN). With ``asymmetry: true`` in the spec
the driver measures each condition once, at the source's own image size, before the trials start, and rewrites the
table after each measurement, so a killed driver loses at most the one in progress; with ``--resume`` the conditions
already in the table are not measured again, and a damaged table is measured again whole (one warning). The report
reads the table back (``read_asymmetry``) to set each arm's gain against the asymmetry of its data.

Nothing here imports torch at module level: the report reads the table without it.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd
import pyarrow as pa

from equisweep.errors import UserError
from equisweep.pipeline.sweep.results import DamagedTable, put_file, read_file, storage_uri
from equisweep.pipeline.vocabulary import is_trivial

log = logging.getLogger(__name__)

ASYMMETRY_FILE = "asymmetry.parquet"
KEY = ["dataset", "train_symmetry", "group"]
COLUMNS = [*KEY, "asymmetry", "low", "high", "n", "steps", "seed"]
SEED = 0  # the measurement's own seed: every sweep measures the same data alike


def measured_group(group: str) -> str:
    """The group an arm's data is measured under, by name: the arm's reference group (``groups.reference_group``),
    which is its own group, or p4 for a plain CNN (it is asked about quarter turns)."""
    return "p4" if is_trivial(group) else str(group).strip().lower()


@dataclass(frozen=True)
class Condition:
    """One measurement: its key, and where and at what size its images are read."""

    dataset: str
    train_symmetry: str
    group: str
    input_size: int | None  # None: the source's own size
    data_dir: str
    download: bool

    @property
    def key(self) -> tuple[str, str, str]:
        return self.dataset, self.train_symmetry, self.group


def conditions(configs: Iterable) -> list[Condition]:
    """The distinct conditions of the run configs ``configs`` (``RunConfig``), in their order; a ``UserError``
    where a condition's group has no element besides the identity that maps the pixel grid onto itself."""
    from equisweep.datamodules.sources import SOURCES
    from equisweep.groups import get_group

    found: dict[tuple[str, str, str], Condition] = {}
    for config in configs:
        data, group = config.data, measured_group(config.model.group)
        if not get_group(group).acts_exactly_on_grid:
            raise UserError(f"asymmetry: the data of the {config.model.group} arms would be measured under "
                            f"{group}, whose rotations do not map the pixel grid onto itself; use p4 or p4m arms, "
                            "or set asymmetry: false")
        native = SOURCES[data.dataset].native_size
        condition = Condition(data.dataset, data.train_symmetry, group, None if native else data.input_size,
                              str(data.data_dir), data.download)
        found.setdefault(condition.key, condition)
    return list(found.values())


def record_asymmetry(sweep_uri: str, configs: Iterable, steps: int | None = None) -> pd.DataFrame:
    """Measure each condition of ``configs`` not yet in ``<sweep_uri>/asymmetry.parquet`` (``steps``: the
    classifier's training steps, default ``asymmetry.STEPS``) and write the table after each one; returns it."""
    from equisweep.datamodules import asymmetry

    try:
        table = read_asymmetry(sweep_uri)
    except DamagedTable as err:
        log.warning("%s: measuring the asymmetry of every condition again", err.problem)
        table = None
    rows = [] if table is None else table.to_dict("records")
    done = {tuple(row[k] for k in KEY) for row in rows}
    for condition in conditions(configs):
        if condition.key in done:
            continue
        try:
            measured = asymmetry.measure_asymmetry(condition.dataset, condition.group, condition.train_symmetry, SEED,
                                                   steps or asymmetry.STEPS, condition.data_dir, condition.input_size,
                                                   condition.download)
        except UserError as err:
            raise UserError(f"{err} (measuring the asymmetry of {condition.dataset}; asymmetry: false skips "
                            "it)") from None
        log.info("asymmetry: %s", measured.summary())
        rows.append({**dict(zip(KEY, condition.key)), "asymmetry": measured.accuracy, "low": measured.low,
                     "high": measured.high, "n": measured.n, "steps": measured.steps, "seed": measured.seed})
        buffer = io.BytesIO()
        pd.DataFrame(rows, columns=COLUMNS).to_parquet(buffer, index=False)
        put_file(sweep_uri, ASYMMETRY_FILE, buffer.getvalue())
    return pd.DataFrame(rows, columns=COLUMNS)


def read_asymmetry(sweep_dir: str) -> pd.DataFrame | None:
    """The sweep's asymmetry table, None where it has none; ``DamagedTable`` where it cannot be read or lacks a
    column."""
    uri = storage_uri(sweep_dir)
    try:
        data = read_file(uri, ASYMMETRY_FILE)
        table = None if data is None else pd.read_parquet(io.BytesIO(data))
    except (pa.ArrowException, OSError) as err:  # truncated, overwritten, not Parquet
        raise DamagedTable(uri, ASYMMETRY_FILE, f"is damaged ({str(err).partition('. ')[0]})") from None
    if table is not None and not set(COLUMNS) <= set(table.columns):
        missing = ", ".join(c for c in COLUMNS if c not in table.columns)
        raise DamagedTable(uri, ASYMMETRY_FILE, f"lacks the column(s) {missing}")
    return table

