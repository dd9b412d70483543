"""The validated settings of one training run: the schema ``equisweep train`` reads and a sweep cell fills in.

Unknown keys are errors. ``load_run_config`` turns any validation failure into one ``UserError`` line that
names the field, so the CLI can exit 2 before anything is trained or written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from equisweep.datamodules.regimes import angle_grid, parse_regime
from equisweep.errors import UserError
from equisweep.groups import get_group


class WandbConfig(BaseModel):
    """Where and how runs stream to Weights & Biases; offline unless a key is set or ``mode: online``."""

    model_config = ConfigDict(extra="forbid")
    project: str = "equisweep"
    entity: str | None = None
    group: str | None = None
    mode: Literal["auto", "online", "offline", "disabled"] = "auto"
    tags: list[str] = Field(default_factory=list)

    def resolved_mode(self) -> str:
        from equisweep.pipeline.train.tracking import resolve_mode

        return resolve_mode(self.mode)


class RunConfig(BaseModel):
    """One training run: data, model, optimisation, evaluation, logging."""

    model_config = ConfigDict(extra="forbid")

    # data
    dataset: str = "mnist5k"
    data_dir: Path = Path("data")
    download: bool = False
    input_size: int = Field(28, ge=1)
    resize_method: Literal["resize", "pad", "crop"] = "resize"
    train_symmetry: str = "none"
    per_batch: bool = False  # one regime draw per batch, as the paper's biased regime did
    batch_size: int = Field(64, ge=1)
    eval_batch_size: int = Field(500, ge=1)
    num_workers: int = Field(2, ge=0)
    # model
    model: str = "p4cnn"
    group: str = "p4"
    backend: Literal["native", "e2cnn"] = "native"
    width: int | None = Field(None, ge=1)
    head: Literal["coset", "flatten"] = "coset"
    dropout: float | None = Field(None, ge=0, lt=1)  # p4cnn only; None keeps the model's default
    # optimisation
    epochs: int = Field(1, ge=1)
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(1e-2, gt=0)
    weight_decay: float = Field(1e-5, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    schedule: Literal["none", "step", "cosine", "onecycle"] = "step"
    step_size: int = Field(10, ge=1)
    gamma: float = Field(0.5, gt=0)
    seed: int = 0
    # evaluation
    angles: list[float] = Field(default_factory=angle_grid)
    eq_error_samples: int = Field(64, ge=1)
    bn_calibration_batches: int = Field(16, ge=0)  # precise BN before each validation; 0 turns it off
    # hardware
    accelerator: str = "auto"
    precision: str = "32-true"
    channels_last: bool = False
    deterministic: bool = True
    # logging
    wandb: WandbConfig = Field(default_factory=WandbConfig)
    run_name: str | None = None

    @field_validator("train_symmetry")
    @classmethod
    def _regime(cls, value: str) -> str:
        return str(parse_regime(value))

    @field_validator("group")
    @classmethod
    def _group(cls, value: str) -> str:
        return get_group(value).name

    @field_validator("dataset")
    @classmethod
    def _dataset(cls, value: str) -> str:
        from equisweep.datamodules.sources import get_source

        return get_source(value).name

    @field_validator("model")
    @classmethod
    def _model(cls, value: str) -> str:
        from equisweep.models import list_models

        if value not in list_models():
            raise UserError(f"model: unknown model {value!r}; choose from: {', '.join(list_models())}")
        return value

    @field_validator("angles")
    @classmethod
    def _angles(cls, value: list[float]) -> list[float]:
        if not value:
            raise UserError("angles: give at least one test angle in degrees, e.g. [0, 45, 90]")
        return value

    @model_validator(mode="after")
    def _group_fits_backend(self) -> RunConfig:
        if self.backend == "native" and not get_group(self.group).acts_exactly_on_grid:
            raise UserError(f"group: {self.group!r} needs backend: e2cnn (the native backend has z2, p4, p4m)")
        return self

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def load_run_config(values: dict[str, Any], config_file: Path | None = None) -> RunConfig:
    """Merge ``values`` (flags; None means unset, mappings merge key by key) over ``config_file`` (YAML) and
    validate; one ``UserError`` line on failure."""
    data: dict[str, Any] = {}
    if config_file is not None:
        if not config_file.is_file():
            raise UserError(f"config: no such file {str(config_file)!r}; pass an existing YAML file")
        try:
            data = yaml.safe_load(config_file.read_text()) or {}
        except yaml.YAMLError as err:
            raise UserError(f"config: {config_file} is not valid YAML ({str(err).splitlines()[0]})") from None
        if not isinstance(data, dict):
            raise UserError(f"config: {config_file} must hold a mapping of settings")
    for key, value in values.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        elif value is not None:
            data[key] = value
    try:
        return RunConfig.model_validate(data)
    except ValidationError as err:
        raise UserError(describe_validation_error(err)) from None


def describe_validation_error(err: ValidationError) -> str:
    """The first problem as ``field: message`` (a nested field as ``a.b``), in one line."""
    first = err.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or "config"
    cause = first.get("ctx", {}).get("error")
    if isinstance(cause, UserError):
        return str(cause)
    if first["type"] == "extra_forbidden":
        return f"{field}: unknown key; remove it or check its spelling"
    return f"{field}: {first['msg']} (got {first.get('input')!r})"
