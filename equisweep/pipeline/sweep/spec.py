"""The sweep spec: a YAML file validated before anything starts, expanded into one ``RunConfig`` per trial.

A spec holds the run settings every trial shares: under ``base:`` or at the top level, each by its flat name
(``lr: 0.01``) or in the run config's groups (``optim: {lr: 0.01}``); then

- ``variants:`` an optional list of partial settings by flat name (the arms of the study, e.g. p4 at 27/28/29
  and z2 at 28),
- ``grid:`` the cartesian product over any run setting (``group``, ``input_size``, ``train_symmetry``, ``seed``,
  ...); an axis is a list, or ``{range: [start, stop]}`` for integers. A *joint axis* sets several settings
  together: its name is free (not a run setting) and its values are mappings, e.g. ``data: [{dataset: mnist5k,
  train_symmetry: c4}, {dataset: mnist69, train_symmetry: none}]``; each setting may come from one axis only,
- ``search:`` Optuna over hyperparameters inside each cell (``num_samples`` trials per cell, metric ``val_acc``),
- ``scheduler:`` ASHA keyed on the epoch, ``resources:`` per trial, ``max_concurrent``, ``max_failures``,
  ``storage:`` and ``wandb:`` (its ``group`` defaults to the sweep name),
- ``pack:`` how many seeds of a cell one trial trains as one packed model (default: all of them, up to
  ``PACK_LIMIT``; ``pack: 1`` runs one trial per seed). A packed trial is one Tune trial (one ``resources:``
  share, one Optuna sample, judged by ASHA on the mean validation accuracy of its live copies) that writes one
  row, one record and one W&B run per seed, so tables, reports and resume see seed-runs either way.
- ``asymmetry:`` true to measure, before the trials, how far each dataset as each regime shows it is from
  invariant (``asymmetry_table.py``; default false).

Cells are variants x grid. Every cell is validated as a full ``RunConfig`` and traced by the static exactness check
(which also rejects input sizes a model cannot take) at load time, so a bad spec fails in one line, exit code 2.
"""

from __future__ import annotations

import functools
import itertools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from equisweep.errors import UserError
from equisweep.files import read_yaml_mapping
from equisweep.models.invariance import invariance_label
from equisweep.models.relaxation import relaxation_label
from equisweep.pipeline.sweep.asymmetry_table import conditions as asymmetry_conditions
from equisweep.pipeline.sweep.sections import RUN_KEYS, Resources, SchedulerSpec, SearchSpec, check_run_key
from equisweep.pipeline.train.config import RunConfig, merge_settings
from equisweep.pipeline.train.config_errors import describe_validation_error
from equisweep.pipeline.vocabulary import is_trivial

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_YES_NO = {True: "yes", False: "no", None: "-"}  # the dry run's exact column
_RUN_CONFIG_KEYS = frozenset(RunConfig.accepted_keys())  # run settings by flat name, and their groups
PACK_LIMIT = 16  # seeds per packed trial unless ``pack:`` says: 16 MNIST-sized P4CNNs fit any GPU and CPU memory
# Seed-runs in one sweep: five times the largest study here (paper_rotmnist.yaml, 2,000), validated in seconds.
MAX_TRIALS = 10_000


class SweepSpec(BaseModel):
    """A sweep: the run settings every trial shares (``base``), plus what varies and how it runs."""

    model_config = ConfigDict(extra="forbid")
    name: str
    base: RunConfig = Field(default_factory=RunConfig)
    variants: list[dict[str, Any]] | None = None
    grid: dict[str, Any] | None = None
    search: SearchSpec | None = None
    scheduler: SchedulerSpec | None = None
    resources: Resources = Field(default_factory=Resources)
    max_concurrent: int | None = Field(None, ge=1)
    max_failures: int = Field(1, ge=0)
    storage: str = "runs/sweeps"
    pack: int | None = Field(None, ge=1)
    asymmetry: bool = False  # measure each dataset and regime's asymmetry before the trials (asymmetry_table.py)

    @model_validator(mode="before")
    @classmethod
    def _gather_base(cls, data: Any) -> Any:
        """Run settings written at the top level join ``base:`` (a setting in both takes the top level's value)."""
        if not isinstance(data, Mapping) or not isinstance(data.get("base", {}), Mapping):
            return data
        shared = {key: value for key, value in data.items() if key in _RUN_CONFIG_KEYS}
        rest = {key: value for key, value in data.items() if key not in _RUN_CONFIG_KEYS}
        return {**rest, "base": merge_settings(data.get("base", {}), shared)} if shared else data

    @classmethod
    def accepted_keys(cls) -> list[str]:
        """The keys a spec takes at its top level: its own, then the run settings'."""
        return [*cls.model_fields, *_RUN_CONFIG_KEYS]

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("use letters, digits, '-', '_' or '.', starting with a letter or digit")
        return value

    @field_validator("grid")
    @classmethod
    def _grid(cls, value: dict[str, Any] | None) -> dict[str, list[Any]] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("the grid is empty; give at least one axis, e.g. seed: [0, 1, 2], or leave grid out")
        axes = {key: _axis_values(key, values) for key, values in value.items()}
        setters: dict[str, str] = {}
        for key, values in axes.items():
            for setting in _axis_settings(key, values):
                if setting in setters:
                    raise ValueError(f"{setting!r} is set by the axes {setters[setting]!r} and {key!r}; let one axis "
                                     "set it")
                setters[setting] = key
        return axes

    @field_validator("variants")
    @classmethod
    def _variants(cls, value: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        if value is not None and not value:
            raise ValueError("no variants; give at least one mapping of settings, or leave variants out")
        for variant in value or []:
            for key in variant:
                check_run_key(key, "variants")
        return value

    @model_validator(mode="after")
    def _size(self) -> SweepSpec:
        """Counted before the cells are built, so that a huge grid is refused at once instead of expanded."""
        cells = len(self.variants or [{}]) * math.prod(len(values) for values in (self.grid or {}).values())
        trials = cells * (self.search.num_samples if self.search else 1)
        if trials > MAX_TRIALS:
            raise UserError(f"grid: variants x grid x search.num_samples make {trials} trials, more than the limit of "
                            f"{MAX_TRIALS} per sweep; narrow the grid or split the sweep")
        return self

    def base_settings(self) -> dict[str, Any]:
        """The run settings shared by every trial, with the W&B group defaulting to the sweep name."""
        base = self.base.flat(mode="json")
        base["wandb"]["group"] = self.base.wandb.group or self.name
        base["data_dir"] = str(Path(base["data_dir"]).absolute())  # trials run in their own working directories
        return base


def _axis_values(key: str, values: Any) -> list[Any]:
    """A grid axis: a list, or ``{range: [start, stop]}`` for the integers start, ..., stop - 1 (100 seeds
    without listing them)."""
    if isinstance(values, dict) and set(values) == {"range"}:
        bounds = values["range"]
        if not (isinstance(bounds, list) and len(bounds) == 2 and all(isinstance(b, int) for b in bounds)):
            raise ValueError(f"axis {key!r}: range takes two integers [start, stop], got {bounds!r}")
        if bounds[1] <= bounds[0]:
            raise ValueError(f"axis {key!r}: range {bounds} is empty; stop must exceed start")
        if bounds[1] - bounds[0] > MAX_TRIALS:
            raise ValueError(f"axis {key!r}: range {bounds} holds {bounds[1] - bounds[0]} values, more than the limit "
                             f"of {MAX_TRIALS} trials per sweep; narrow it or split the sweep")
        return list(range(*bounds))
    if not isinstance(values, list):
        raise ValueError(f"axis {key!r}: give a list of values or {{range: [start, stop]}}, got {values!r}")
    if not values:
        raise ValueError(f"axis {key!r} has no values; give at least one")
    return values


def _axis_settings(key: str, values: list[Any]) -> list[str]:
    """The run settings an axis sets: its own name, or for a joint axis (a free name with mappings as values) the
    keys of its mappings, each checked to be a sweepable run setting."""
    if key in RUN_KEYS or not all(isinstance(value, dict) for value in values):
        check_run_key(key, "grid")
        return [key]
    settings = list(dict.fromkeys(setting for value in values for setting in value))
    if not settings:
        raise ValueError(f"joint axis {key!r}: its mappings set nothing; give settings such as {{dataset: mnist5k}}")
    for setting in settings:
        check_run_key(setting, f"grid.{key}")
    return settings


def _overrides(axes: dict[str, list[Any]], values: tuple[Any, ...]) -> dict[str, Any]:
    """One grid point's settings: an axis's value under its name, a joint axis's mapping merged in."""
    point: dict[str, Any] = {}
    for key, value in zip(axes, values):
        point.update(value if key not in RUN_KEYS else {key: value})
    return point


@dataclass(frozen=True)
class Cell:
    """One point of variants x grid: the settings it overrides, the full run config, and its static verdict
    (None for a trivial group, where exact and approximate do not apply)."""

    index: int
    overrides: dict[str, Any]
    config: RunConfig
    exact: bool | None


@dataclass(frozen=True)
class Pack:
    """The cells one trial trains together: equal but for ``seed``. ``shared``: their overrides less the seed."""

    index: int
    cells: tuple[Cell, ...]
    shared: dict[str, Any]

    @property
    def seeds(self) -> list[int]:
        return [cell.config.seed for cell in self.cells]

    def trial_config(self) -> dict[str, Any]:
        """What the trial's config holds under ``"pack"`` (``results.pack_of`` reads it back)."""
        return {"cell": self.shared, "seeds": self.seeds}


@dataclass(frozen=True)
class Sweep:
    """A validated spec, expanded into its cells, and the cells into packed trials."""

    spec: SweepSpec
    cells: tuple[Cell, ...]
    source: Path | None = None

    @property
    def num_trials(self) -> int:
        """Seed-runs: a packed trial counts once per seed it trains."""
        return len(self.cells) * (self.spec.search.num_samples if self.spec.search else 1)

    @functools.cached_property
    def packs(self) -> tuple[Pack, ...]:
        """Cells equal but for the seed, in order, in packs of up to ``pack`` (default ``PACK_LIMIT``) seeds; a
        channels-last cell runs alone (its layout has no room for the copies' leading axis)."""
        limit = self.spec.pack or PACK_LIMIT
        groups: dict[str, list[Cell]] = {}
        for cell in self.cells:
            shared = {key: value for key, value in cell.overrides.items() if key != "seed"}
            alone = cell.config.hardware.channels_last or limit == 1
            key = repr((sorted(shared.items()), cell.index if alone else None))
            groups.setdefault(key, []).append(cell)
        packs: list[Pack] = []
        for cells in groups.values():
            shared = {key: value for key, value in cells[0].overrides.items() if key != "seed"}
            for start in range(0, len(cells), limit):
                packs.append(Pack(len(packs), tuple(cells[start:start + limit]), shared))
        return tuple(packs)

    @property
    def varying_keys(self) -> list[str]:
        keys = dict.fromkeys(key for cell in self.cells for key in cell.overrides)
        return [key for key in keys if len({repr(cell.overrides.get(key)) for cell in self.cells}) > 1]

    def trial_table(self) -> str:
        """One line per trial, ``<index>  key=value ...  seeds=...  exact=yes|no|-  cpu=.. gpu=..`` (the varying
        settings, the seeds it packs, the static verdict, ``-`` where it does not apply, its resources, the
        searched space), aligned; last, ``N trials`` counting seed-runs."""
        keys = [key for key in self.varying_keys if key != "seed"] or ["model", "group", "input_size"]
        searched = []
        if self.spec.search:
            searched = [f"search {' '.join(f'{k}~{d.describe()}' for k, d in self.spec.search.space.items())}"]
        samples = self.spec.search.num_samples if self.spec.search else 1
        resources = f"cpu={self.spec.resources.cpu:g} gpu={self.spec.resources.gpu:g}"
        settings = [{**config.flat(), "relaxation": relaxation_label(config.model.relaxation),
                     "invariance": invariance_label(config.model.invariance)}
                    for config in (pack.cells[0].config for pack in self.packs)]
        rows = [[str(pack.index * samples + sample), *(f"{key}={settings[pack.index][key]}" for key in keys),
                 f"seeds={_runs(pack.seeds)}", f"exact={_YES_NO[pack.cells[0].exact]}", resources,
                 *searched]
                for pack in self.packs for sample in range(samples)]
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(value.ljust(width) for value, width in zip(row, widths)).rstrip() for row in rows]
        packed = f"{len(rows)} packed trials of up to {self.spec.pack or PACK_LIMIT} seeds (pack), resources each"
        return "\n".join([*lines, packed, f"{self.num_trials} trials"])


def _runs(numbers: list[int]) -> str:
    """``0-15`` for a run of three or more consecutive numbers, else comma-separated: ``0,1,5-9``."""
    parts, start = [], 0
    for i in range(1, len(numbers) + 1):
        if i == len(numbers) or numbers[i] != numbers[i - 1] + 1:
            run = numbers[start:i]
            parts.append(f"{run[0]}-{run[-1]}" if len(run) >= 3 else ",".join(map(str, run)))
            start = i
    return ",".join(parts)


def load_sweep(path: Path, overrides: dict[str, Any] | None = None) -> Sweep:
    """Read, validate and expand a spec file; ``overrides`` (``storage``, ``wandb``) replace keys from the command
    line. Every failure is one ``UserError`` line naming the field."""
    data = read_yaml_mapping(path, "spec")
    for key, value in (overrides or {}).items():
        if isinstance(value, dict):
            data[key] = {**(data.get(key) or {}), **value}
        elif value is not None:
            data[key] = value
    try:
        spec = SweepSpec.model_validate(data)
    except ValidationError as err:
        raise UserError(describe_validation_error(err, SweepSpec)) from None
    sweep = Sweep(spec, expand(spec), path)
    if spec.asymmetry:  # refuses a group the measurement cannot use before anything runs
        asymmetry_conditions(cell.config for cell in sweep.cells)
    return sweep


def expand(spec: SweepSpec) -> tuple[Cell, ...]:
    """Variants x grid, each validated as a full ``RunConfig`` and checked statically for exactness. The same run
    twice (a repeated grid value, or a variant that repeats another's cell) is refused: its two trials would share
    one id and one W&B run."""
    base = spec.base_settings()
    axes = spec.grid or {}
    cells = []
    seen: dict[str, int] = {}  # a cell's full settings -> the variant that gave it first
    for number, variant in enumerate(spec.variants or [{}]):
        for values in itertools.product(*axes.values()):
            overrides = {**variant, **_overrides(axes, values)}
            where = ", ".join(f"{key}={value}" for key, value in overrides.items())
            try:
                config = RunConfig.from_flat({**base, **overrides})
            except ValidationError as err:
                raise UserError(f"{describe_validation_error(err)} (in the cell {where})") from None
            settings = config.model_dump_json()
            if settings in seen and seen[settings] == number:
                raise UserError(f"grid: the run {where} comes twice; remove the repeated value from the grid")
            if settings in seen:
                raise UserError(f"variants: variants[{seen[settings]}] and variants[{number}] both give the run "
                                f"{where}; drop one of them")
            seen[settings] = number
            try:
                exact = static_exact(config)
            except UserError as err:
                raise UserError(f"{err} (in the cell {where})") from None
            cells.append(Cell(len(cells), overrides, config, exact))
    return tuple(cells)


def static_exact(config: RunConfig) -> bool | None:
    """Whether this run's model is exactly equivariant at its input size (a ``UserError`` if it cannot run); None
    where the static check cannot decide, and for a trivial group, whose net is traced all the same so that a size
    it cannot take still fails here."""
    net = config.model
    return _static_exact(net.model, net.group, config.data.input_size, net.width, net.head, net.backend,
                         config.data.dataset, net.subsampling, tuple(net.relaxation.items()),
                         tuple(net.invariance.items()))


@functools.lru_cache(maxsize=256)
def _static_exact(model: str, group: str, input_size: int, width: int | None, head: str, backend: str,
                  dataset: str, subsampling: str, relaxation: tuple, invariance: tuple) -> bool | None:
    """As a run's ``build_run`` judges its network: a trivial group's is None, unless a wrapper gives it a group."""
    from equisweep.datamodules.sources import trace_shape
    from equisweep.exactness import check_exactness
    from equisweep.models import build_model

    num_classes, channels = trace_shape(dataset)
    net = build_model(model, group=group, num_classes=num_classes, in_channels=channels, width=width, head=head,
                      backend=backend, subsampling=subsampling, relaxation=dict(relaxation),
                      invariance=dict(invariance))
    report = check_exactness(net, input_size, model_name=model, nearest=False)
    return None if is_trivial(report.group) else report.exact
