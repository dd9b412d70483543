"""The parts of a sweep spec beside the shared run settings: what may vary (a run setting by its flat name, as
``variants:``, ``grid:`` and ``search.space`` name it), the Optuna search space (``search:``), ASHA (``scheduler:``)
and each trial's share of the machine (``resources:``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from equisweep.pipeline.train.config import FLAT_PATHS
from equisweep.pipeline.train.config_errors import old_relaxation_key

RUN_KEYS = frozenset(FLAT_PATHS)
NOT_SWEEPABLE = frozenset({"wandb", "run_name"})


def check_run_key(key: str, where: str) -> None:
    """Refuse (``ValueError`` for the spec's validation) a key of ``where`` that is no run setting or cannot vary."""
    if key not in RUN_KEYS:
        choices = ", ".join(sorted(RUN_KEYS - NOT_SWEEPABLE))
        raise ValueError(old_relaxation_key(key) or f"{key!r} is not a run setting; use one of: {choices} "
                         "(or, as a joint grid axis, give a list of mappings of settings)")
    if key in NOT_SWEEPABLE:
        raise ValueError(f"{key!r} cannot vary across trials; set it once at the top level")


class Distribution(BaseModel):
    """One hyperparameter's search space: exactly one of uniform, loguniform, randint (bounds) or choice."""

    model_config = ConfigDict(extra="forbid")
    uniform: tuple[float, float] | None = None
    loguniform: tuple[float, float] | None = None
    randint: tuple[int, int] | None = None
    choice: list[Any] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Distribution:
        given = [name for name, value in self if value is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of uniform: [lo, hi], loguniform: [lo, hi], randint: [lo, hi], "
                             "choice: [...]")
        kind = given[0]
        value = getattr(self, kind)
        if kind == "choice" and not value:
            raise ValueError("choice: give at least one value")
        if kind != "choice" and not value[0] < value[1]:
            raise ValueError(f"{kind}: the lower bound must be below the upper one, got {list(value)}")
        if kind == "loguniform" and value[0] <= 0:
            raise ValueError(f"loguniform: bounds must be positive, got {list(value)}")
        return self

    def to_tune(self):
        from ray import tune

        if self.uniform is not None:
            return tune.uniform(*self.uniform)
        if self.loguniform is not None:
            return tune.loguniform(*self.loguniform)
        if self.randint is not None:
            return tune.randint(self.randint[0], self.randint[1] + 1)  # inclusive upper bound, as written
        return tune.choice(self.choice)

    def describe(self) -> str:
        return next(f"{name}{list(value)}" for name, value in self if value is not None)


class SearchSpec(BaseModel):
    """Optuna inside every grid cell: ``num_samples`` trials per cell, maximising ``val_acc``."""

    model_config = ConfigDict(extra="forbid")
    num_samples: int = Field(ge=1)
    metric: Literal["val_acc"] = "val_acc"
    space: dict[str, Distribution]
    seed: int = 0
    start: list[dict[str, Any]] = Field(default_factory=list)  # points every cell tries first, then Optuna samples
    # samples per cell drawn at random before TPE models the space (start points count among them); default: half
    # of num_samples, at most Optuna's 10. At num_samples or more the whole search is random.
    startup: int | None = Field(None, ge=1)

    @field_validator("space")
    @classmethod
    def _keys(cls, value: dict[str, Distribution]) -> dict[str, Distribution]:
        if not value:
            raise ValueError("give at least one hyperparameter, e.g. lr: {loguniform: [1e-4, 1e-2]}")
        for key in value:
            check_run_key(key, "search.space")
        return value

    @model_validator(mode="after")
    def _start_points(self) -> SearchSpec:
        for point in self.start:
            if set(point) != set(self.space):
                raise ValueError(f"start: each point gives a value for every key of space ({', '.join(self.space)}), "
                                 f"got {point}")
        return self


class SchedulerSpec(BaseModel):
    """ASHA early stopping on ``val_acc``, with the trial's epoch as its clock."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["asha"] = "asha"
    grace_period: int = Field(1, ge=1)
    reduction_factor: float = Field(2.0, gt=1)


class Resources(BaseModel):
    """Per trial. Fractional GPUs share one device (Lightning still sees ``devices=1``)."""

    model_config = ConfigDict(extra="forbid")
    cpu: float = Field(1.0, gt=0)
    gpu: float = Field(0.0, ge=0, le=1)

    def to_tune(self) -> dict[str, float]:
        return {"cpu": self.cpu, "gpu": self.gpu}
