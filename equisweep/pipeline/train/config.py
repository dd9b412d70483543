"""The validated settings of one training run: the schema ``equisweep train`` reads and a sweep cell fills in.

Unknown keys are errors. ``load_run_config`` turns any validation failure into one ``UserError`` line that
names the field (worded by ``config_errors.py``), so the CLI can exit 2 before anything is trained or written.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from equisweep.datamodules.regimes import angle_grid, parse_regime
from equisweep.errors import UserError
from equisweep.files import read_yaml_mapping
from equisweep.groups import get_group
from equisweep.models.heads import Head
from equisweep.models.invariance import NO_INVARIANCE, invariance_settings, resolve_invariance, wrapper_group
from equisweep.models.registry import Backend, check_relaxation, check_subsampling
from equisweep.models.relaxation import NO_RELAXATION, relaxation_settings
from equisweep.pipeline.train.eq_penalty import PenaltyKind

MAX_EPOCHS = 10_000  # far beyond any schedule here (the paper's longest is 300); a larger number is a typo

# The allowed values of each setting, written once; the tuples other modules check against derive from them.
ResizeMethod = Literal["resize", "pad", "crop"]
Optimizer = Literal["adam", "adamw", "sgd"]
Schedule = Literal["none", "step", "cosine", "onecycle"]
Accelerator = Literal["auto", "cpu", "gpu", "cuda", "mps"]
# Lightning's precision names (its transformer-engine ones need NVIDIA's library, which equisweep does not install)
Precision = Literal["32-true", "64-true", "16-true", "bf16-true", "16-mixed", "bf16-mixed"]
WandbMode = Literal["auto", "online", "offline", "disabled"]


class WandbConfig(BaseModel):
    """Where and how runs stream to Weights & Biases. ``mode: auto`` obeys an explicit ``WANDB_MODE``, then goes online
    only with an API key (``WANDB_API_KEY`` or ``wandb login``), else offline; ``disabled`` writes nothing."""

    model_config = ConfigDict(extra="forbid")
    project: str = Field("equisweep", description="W&B project")
    entity: str | None = Field(None, description="W&B entity (default: your own)")
    group: str | None = Field(None, description="W&B group (a sweep's: its name)")
    mode: WandbMode = Field("auto", description="auto | online | offline | disabled")
    tags: list[str] = Field(default_factory=list, description="W&B tags, comma-separated")

    def resolved_mode(self) -> str:
        """The mode runs log in here: ``auto`` resolved (``equisweep.pipeline.train.tracking.explain_mode``)."""
        from equisweep.pipeline.train.tracking import resolve_mode

        return resolve_mode(self.mode)


class DataConfig(BaseModel):
    """Which images, at what size, under which training symmetry, in what batches."""

    model_config = ConfigDict(extra="forbid")
    dataset: str = Field("mnist5k", description="mnist5k | mnist69 | mnist6-180 | mnist6-m (embedded) | mnist | "
                         "cifar10 | cifar100 | flowers102 | pcam | folder (your images: --data-dir holds train/, val/ "
                         "and maybe test/, a subfolder per class)")
    data_dir: Path = Field(Path("data"), description="where the dataset's files are")
    download: bool = Field(False, description="allow downloading the dataset")
    input_size: int = Field(28, ge=1, description="square input size in pixels")
    resize_method: ResizeMethod = Field("resize", description="resize | pad | crop")
    train_symmetry: str = Field("none", description="none | c4 | d4 | flip | uniform | gaussian(MEAN,STD)")
    per_batch: bool = Field(False, description="one training-symmetry draw per batch (the paper's biased regime), "
                            "not per image")
    batch_size: int = Field(32, ge=1, description="training batch size")
    eval_batch_size: int = Field(500, ge=1, description="validation and test batch size")
    num_workers: int = Field(2, ge=0, description="data loader worker processes")

    @field_validator("train_symmetry")
    @classmethod
    def _regime(cls, value: str) -> str:
        return str(parse_regime(value))

    @field_validator("dataset")
    @classmethod
    def _dataset(cls, value: str) -> str:
        from equisweep.datamodules.sources import check_dataset

        return check_dataset(value)


RelaxationSetting = Annotated[dict[str, Any], BeforeValidator(relaxation_settings)]
InvarianceSetting = Annotated[dict[str, Any], BeforeValidator(invariance_settings)]

class ModelConfig(BaseModel):
    """The network: architecture, group, backend, head, and how its equivariance is relaxed or kept at any size."""

    model_config = ConfigDict(extra="forbid")
    model: str = Field("p4cnn", description="registered model: p4cnn | resnet18 | resnet44")
    group: str = Field("p4", description="z2 | p4 | p4m (native), c<N> | d<N> (e2cnn)")
    backend: Backend = Field("native", description="native | e2cnn")
    width: int | None = Field(None, ge=1, description="base width (default: the paper's for the model and group)")
    head: Head = Field("coset", description="coset (invariant) | flatten")
    dropout: float | None = Field(None, ge=0, lt=1, description="p4cnn dropout rate (default: no dropout; the "
                                  "paper presets set 0.1)")
    # relaxed equivariance (see equisweep/models/relaxation.py): a registered method by name (its options at their
    # defaults) or as {method: name, **options}, e.g. {method: rpp, free_wd: 1.0}; kept as the full mapping
    relaxation: RelaxationSetting = Field(
        default_factory=lambda: relaxation_settings(NO_RELAXATION),
        description="none | relaxed | rpp | partial (p4 / p4m, native backend) with its defaults, or with options as "
        "a YAML mapping: '{method: rpp, free_wd: 1e-4}'")
    # adaptive subsamples every stride-2 layer on a grid that follows the input (see equisweep/models/subsampling.py)
    subsampling: str = Field("stride", description="stride | adaptive (exact at any input size; native backend)")
    # invariance at the input (see equisweep/models/invariance.py): a wrapper around the network, by name or as
    # {method: name, **options}, e.g. {method: augerino, samples: 16}; kept as the full mapping
    invariance: InvarianceSetting = Field(
        default_factory=lambda: invariance_settings(NO_INVARIANCE),
        description="none | average | canonicalize | augerino (wraps any model) with its defaults, or with options as "
        "a YAML mapping: '{method: augerino, samples: 16}'")

    @field_validator("group")
    @classmethod
    def _group(cls, value: str) -> str:
        return get_group(value).name

    @field_validator("model")
    @classmethod
    def _model(cls, value: str) -> str:
        from equisweep.models import list_models

        if value not in list_models():
            raise UserError(f"model: unknown model {value!r}; choose from: {', '.join(list_models())}")
        return value

    @model_validator(mode="after")
    def _group_fits_backend(self) -> ModelConfig:
        if self.backend == "native" and not get_group(self.group).acts_exactly_on_grid:
            raise UserError(f"group: {self.group!r} needs backend: e2cnn (the native backend has z2, p4, p4m)")
        return self

    @model_validator(mode="after")
    def _relaxation_fits_model(self) -> ModelConfig:
        check_relaxation(self.relaxation, self.group, self.backend)
        return self

    @model_validator(mode="after")
    def _invariance_fits_group(self) -> ModelConfig:
        record, options = resolve_invariance(self.invariance)
        group = wrapper_group(self.group, options)
        if record.name != NO_INVARIANCE and not group.acts_exactly_on_grid:
            raise UserError(f"invariance: {record.name} acts by quarter turns, and {group.name} has other rotations; "
                            f"set its group: {{method: {record.name}, group: p4}} (or p4m), or a p4/p4m model")
        return self

    @model_validator(mode="after")
    def _subsampling_fits_backend(self) -> ModelConfig:
        check_subsampling(self.subsampling, self.backend)
        return self


class OptimConfig(BaseModel):
    """How long and how the network is trained. The defaults train the exact p4cnn on mnist5k to >= 0.9 upright (five
    epochs of 94 steps; its invariant head needs a few hundred steps, where the plain CNN gets there in one epoch)."""

    model_config = ConfigDict(extra="forbid")
    epochs: int = Field(5, ge=1, le=MAX_EPOCHS, description="training epochs")
    optimizer: Optimizer = Field("adam", description="adam | adamw | sgd")
    lr: float = Field(1e-2, gt=0, description="learning rate")
    weight_decay: float = Field(1e-5, ge=0, description="weight decay")
    momentum: float = Field(0.9, ge=0, lt=1, description="sgd: momentum")
    schedule: Schedule = Field("cosine", description="none | step | cosine | onecycle")
    step_size: int = Field(10, ge=1, description="epochs between decays of the step schedule")
    gamma: float = Field(0.5, gt=0, description="decay factor of the step schedule")
    # soft equivariance (see equisweep/pipeline/train/eq_penalty.py): λ times the output's change under the group
    eq_penalty: float = Field(0.0, ge=0, description="λ of the soft-equivariance penalty added to the loss (0: off)")
    eq_penalty_kind: PenaltyKind = Field("orbit", description="orbit (one random group element per batch) | lie "
                                         "(squared Lie derivative under rotation)")


class EvaluationConfig(BaseModel):
    """What is measured after training."""

    model_config = ConfigDict(extra="forbid")
    angles: list[float] = Field(default_factory=angle_grid, description="test angles in degrees, comma-separated")
    eq_error_samples: int = Field(64, ge=1, description="test images the equivariance error is measured on")
    bn_calibration_batches: int = Field(16, ge=0, description="training batches that recompute batch-norm "
                                        "statistics before each validation (0: off)")

    @field_validator("angles")
    @classmethod
    def _angles(cls, value: list[float]) -> list[float]:
        if not value:
            raise UserError("angles: give at least one test angle in degrees, e.g. [0, 45, 90]")
        return value


class HardwareConfig(BaseModel):
    """Where and in which number format it runs."""

    model_config = ConfigDict(extra="forbid")
    accelerator: Accelerator = Field("auto", description="auto | cpu | gpu | cuda | mps")
    precision: Precision = Field("32-true", description="Lightning precision: 32-true | 64-true | 16-true | "
                                 "bf16-true | 16-mixed | bf16-mixed")
    channels_last: bool = Field(False, description="channels-last memory layout (faster convolutions on some GPUs)")
    deterministic: bool = Field(True, description="deterministic kernels (off: cuDNN picks the fastest)")


# The groups of settings; every name inside them is unique across groups, so a flat name finds its one place.
GROUPS: dict[str, type[BaseModel]] = {"data": DataConfig, "model": ModelConfig, "optim": OptimConfig,
                                      "evaluation": EvaluationConfig, "hardware": HardwareConfig}


class RunConfig(BaseModel):
    """One training run: its groups of settings, its seed (weights, data split and order), W&B and run name.

    It validates the groups (``{"optim": {"lr": 0.1}}``), today's flat names (``{"lr": 0.1}``, what sweep grids,
    results tables, W&B and the CLI flags use) or both; ``flat()`` is the flat view."""

    model_config = ConfigDict(extra="forbid")

    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    seed: int = Field(0, description="seed of the weights, the data split and the order")
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    hardware: HardwareConfig = Field(default_factory=HardwareConfig)
    wandb: WandbConfig = Field(default_factory=WandbConfig)
    run_name: str | None = Field(None, description="W&B run name (default: the --out folder's name)")

    @model_validator(mode="before")
    @classmethod
    def _nest_flat_names(cls, data: Any) -> Any:
        return nest(data) if isinstance(data, Mapping) else data

    @classmethod
    def from_flat(cls, settings: Mapping[str, Any]) -> RunConfig:
        """The run of flat settings (``{"group": "p4", "lr": 0.1, ...}``), as sweep cells and results rows hold them."""
        return cls.model_validate(settings)

    @classmethod
    def accepted_keys(cls) -> list[str]:
        """The keys a run config takes at its top level: every flat name, then the groups."""
        return [*FLAT_PATHS, *GROUPS]

    def flat(self, mode: Literal["python", "json"] = "python") -> dict[str, Any]:
        """Every setting under its flat name, in the schema's order (``wandb`` stays one mapping)."""
        dumped = self.model_dump(mode=mode)
        return {name: dumped[path[0]][path[1]] if len(path) == 2 else dumped[name] for name, path in FLAT_PATHS.items()}

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.flat(mode="json"), sort_keys=False)


def _flat_paths() -> dict[str, tuple[str, ...]]:
    paths: dict[str, tuple[str, ...]] = {}
    for name in RunConfig.model_fields:
        for leaf in GROUPS[name].model_fields if name in GROUPS else [name]:
            if leaf in paths:
                raise TypeError(f"run setting {leaf!r} is in two groups; flat names must be unique")
            paths[leaf] = (name, leaf) if name in GROUPS else (name,)
    return paths


FLAT_PATHS = _flat_paths()  # flat name -> (group, name), or (name,) for a setting outside the groups


def nest(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Run settings given by flat name, by group or both, in the groups' form; a setting given both ways is refused.
    ``model`` is the group when its value is a mapping, else the model's name. Unknown keys pass through, for
    validation to name them."""
    nested: dict[str, Any] = {}
    for key, value in settings.items():
        if key in GROUPS and isinstance(value, Mapping):
            group, items = key, value.items()
        elif len(FLAT_PATHS.get(key, ())) == 2:
            group, items = FLAT_PATHS[key][0], [(key, value)]
        else:
            nested[key] = value
            continue
        into = nested.setdefault(group, {})
        if not isinstance(into, dict):
            raise UserError(f"{group}: must be a mapping (key: value), got {into!r}")
        for name, setting in items:
            if name in into:
                raise UserError(f"{name}: given both as {name} and inside {group}; set it once")
            into[name] = setting
    return nested


def merge_settings(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Run settings (each flat, grouped or both) merged in the groups' form, later layers winning setting by setting
    (a mapping such as ``wandb`` merges key by key)."""
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in nest(layer).items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
    return merged


def load_run_config(values: dict[str, Any], config_file: Path | None = None) -> RunConfig:
    """Merge ``values`` (flags; None means unset, mappings merge key by key) over ``config_file`` (YAML) and
    validate; one ``UserError`` line on failure."""
    data = read_yaml_mapping(config_file, "config") if config_file is not None else {}
    flags = {key: value for key, value in values.items() if value is not None}
    try:
        return RunConfig.model_validate(merge_settings(data, flags))
    except ValidationError as err:
        from equisweep.pipeline.train.config_errors import describe_validation_error  # it reads this module's schema

        raise UserError(describe_validation_error(err)) from None
