"""A sweep on Ray Tune: every trial runs ``run_one`` (the code behind ``equisweep train``) as a function trainable,
or, for a trial that packs several seeds of a cell, ``run_packed`` (one fused model, one seed-run per copy).

Fixed arguments are bound with ``tune.with_parameters`` and resources with ``tune.with_resources``; the objective
(``val_acc``, max) goes in the tune config, name and storage in the run config. Lightning meets Tune in one object,
``EpochReport``, which reports after each epoch with what a retry on any node resumes from. The experiment
name is the sweep's, so ``resume=True`` restores it (``Tuner.restore``): finished trials stay finished, errored
ones resume from their last checkpoint. ``ResultsTable`` (``recorder.py``) rewrites the Parquet tables
(``results.py``) as trials start, finish and fail, and records every finished result, which a resumed trial replays
instead of training. Lightning and Tune meet only through public API: ``tune.report`` with a ``tune.Checkpoint``,
``tune.get_checkpoint``, and Tune's ``Callback`` hooks.
With ``scheduler:``, ASHA stops trials early only within a cell (``scheduler.py``), never across arms.
With ``asymmetry: true``, the data's asymmetry is measured before the trials (``asymmetry_table.py``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytorch_lightning as pl
import ray
from pytorch_lightning.callbacks import Checkpoint, ModelCheckpoint
from ray import tune

from equisweep.errors import UserError
from equisweep.pipeline import vocabulary as m
from equisweep.pipeline.sweep import results as r
from equisweep.pipeline.sweep.asymmetry_table import record_asymmetry
from equisweep.pipeline.sweep.loopback import loopback_only
from equisweep.pipeline.sweep.recorder import COPY_VAL_ACC, ResultsTable
from equisweep.pipeline.sweep.spec import Sweep
from equisweep.pipeline.train.config import RunConfig
from equisweep.pipeline.train.packing import run_packed
from equisweep.pipeline.train.run import run_one

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint"  # the trainer's Lightning checkpoint inside each Tune checkpoint
BEST_FILE = "best.ckpt"  # and the run's best checkpoint so far


class EpochReport(Checkpoint):
    """After each epoch but the last: ``val_acc``, ``train_loss`` and the epoch (ASHA's clock) to Tune, with a Tune
    checkpoint of all a retried trial needs to finish on any node: the whole trainer state (``CHECKPOINT_FILE``) and
    the run's best checkpoint so far (``BEST_FILE``; a pack keeps its copies' best states in its trainer state).

    A Lightning ``Checkpoint``, so that Lightning calls it with the checkpoint callbacks: last, in the order given,
    after the run's ``ModelCheckpoint`` has saved this epoch's best.

    The last epoch is reported once, by the trial's final result with the test metrics: a scheduler stops a trial
    that reaches its last epoch, and would otherwise stop it before it is tested."""

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch + 1 >= trainer.max_epochs:
            return
        report = {key: trainer.callback_metrics[key].item() for key in (m.VAL_ACC, m.TRAIN_LOSS)}
        report[m.EPOCH] = trainer.current_epoch + 1
        if hasattr(pl_module, "copy_val_acc"):  # a pack: val_acc is its live copies' mean
            report[COPY_VAL_ACC] = list(pl_module.copy_val_acc)
        best = [c.best_model_path for c in trainer.checkpoint_callbacks
                if isinstance(c, ModelCheckpoint) and c.best_model_path]
        with tempfile.TemporaryDirectory() as directory:
            trainer.save_checkpoint(Path(directory, CHECKPOINT_FILE))
            if best:
                shutil.copyfile(best[0], Path(directory, BEST_FILE))
            tune.report(report, checkpoint=tune.Checkpoint.from_directory(directory))


def run_trial(config: dict[str, Any], base: dict[str, Any], finished: dict[str, dict]) -> None:
    """The Tune function trainable: the seeds of one cell (plus the searched values) trained by ``run_one`` (one
    seed) or ``run_packed`` (several, each copy in ``seed<N>/``) in the trial's working directory, which Tune
    syncs to storage."""
    context = tune.get_context()
    shared, seeds = r.pack_of(config)
    packed = len(seeds) > 1
    runs = [r.run_id(context.get_trial_id(), seed, packed) for seed in seeds]
    if all(run in finished for run in runs):
        # Finished and recorded by a driver that was killed before Tune saved its own state: replay, don't train.
        tune.report(r.pack_result({str(s): finished[run] for s, run in zip(seeds, runs)}) if packed
                    else finished[runs[0]])
        return
    name = context.get_trial_name()
    settings = [RunConfig.from_flat({**base, **shared, **config.get("search", {}), "seed": seed,
                                          "run_name": r.run_id(name, seed, packed)}) for seed in seeds]
    checkpoint = tune.get_checkpoint()
    with checkpoint.as_directory() if checkpoint else contextlib.nullcontext() as checkpoint_dir:
        resume_from = Path(checkpoint_dir, CHECKPOINT_FILE) if checkpoint_dir else None
        best_so_far = Path(checkpoint_dir, BEST_FILE) if checkpoint_dir else None  # absent before any best was saved
        if packed:
            outcomes = run_packed(settings, [Path.cwd() / f"seed{seed}" for seed in seeds],
                                  callbacks=[EpochReport()], resume_from=resume_from)
            tune.report(r.pack_result({str(seed): r.final_result(o, settings[0].optim.epochs) if isinstance(o, dict)
                                       else {"error": f"{type(o).__name__}: {o}"} for seed, o in zip(seeds, outcomes)}))
            return
        results = run_one(settings[0], Path.cwd(), callbacks=[EpochReport()], enable_progress_bar=False,
                          resume_from=resume_from,
                          best_so_far=best_so_far if best_so_far and best_so_far.is_file() else None)
    tune.report(r.final_result(results, settings[0].optim.epochs))


def trial_dirname(trial) -> str:
    """``<trial id>-<the cell's values>``, e.g. ``3f2a1_00004-p4-29-c4-1``: readable and unique."""
    cell, seeds = r.pack_of(trial.config)
    seeds = [str(seed) for seed in seeds]
    values = "-".join([*(str(value) for value in cell.values()), "-".join(dict.fromkeys([seeds[0], seeds[-1]]))])
    safe = "".join(ch if ch.isalnum() or ch in "._" else "-" for ch in values)[:80]
    return f"{trial.trial_id}-{safe}" if safe else trial.trial_id


@dataclass(frozen=True)
class SweepOutcome:
    path: str
    counts: dict[str, int]


def sweep_uri(sweep: Sweep) -> str:
    """``<storage>/<name>``: where the sweep's trials, state and result tables live."""
    return f"{r.storage_uri(sweep.spec.storage).rstrip('/')}/{sweep.spec.name}"


def check_resumable(sweep: Sweep, resume: bool) -> bool:
    """Whether a sweep of this name exists at its storage; one that exists must be resumed, not overwritten. A
    resumed sweep first gets back the finished records that only its table still holds (so those trials replay)."""
    exists = tune.Tuner.can_restore(sweep_uri(sweep))
    if exists and not resume:
        raise UserError(f"name: a sweep called {sweep.spec.name!r} already exists at {sweep_uri(sweep)}; pass "
                        "--resume to continue it, or change its name or --storage")
    if resume and not exists:
        log.warning("nothing to resume at %s: starting the sweep", sweep_uri(sweep))
    if resume and exists:
        written = r.write_back_records(sweep_uri(sweep))
        if written:
            log.warning("wrote back the finished records of %s from %s", ", ".join(written), r.RESULTS_FILE)
    return exists


def run_sweep(sweep: Sweep, resume: bool = False, verbose: int = 1,
              callbacks: Sequence[tune.Callback] = ()) -> SweepOutcome:
    """Run (or with ``resume`` continue) ``sweep`` on the Ray instance this process is connected to; ``callbacks``
    are more Tune callbacks for the driver (a new sweep only: a restored one keeps those it started with).

    A trial worker killed by Ray's memory monitor ends Tune's whole run (Tune counts a dead worker as a failed
    attempt, but not one killed for memory): the sweep is then restored, as ``--resume`` does, up to
    ``max_failures`` times, and after that ends in a ``UserError`` that says to continue with ``--resume``."""
    path = sweep_uri(sweep)
    resumed = check_resumable(sweep, resume)  # first: it writes back finished records that trials then replay
    if sweep.spec.asymmetry:  # the data's asymmetry, once per condition (a resumed sweep keeps what it measured)
        record_asymmetry(path, [cell.config for cell in sweep.cells])
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, base=sweep.spec.base_settings(), finished=r.load_finished(path)),
        sweep.spec.resources.to_tune())

    def restored() -> tune.Tuner:  # finished trials stay finished, the others go on from their last checkpoints
        return tune.Tuner.restore(path, trainable, resume_errored=True, param_space=_param_space(sweep))

    if resumed:
        tuner = restored()
    else:
        tuner = tune.Tuner(trainable, param_space=_param_space(sweep), tune_config=_tune_config(sweep),
                           run_config=_run_config(sweep, verbose, callbacks))
    kills = 0
    while True:
        try:
            grid = tuner.fit()
            break
        except RuntimeError as err:  # Tune ends the whole run when Ray's memory monitor kills a trial's worker
            killed = _killed_for_memory(err)
            if killed is None:
                raise
            kills += 1
            if kills > sweep.spec.max_failures:
                raise UserError(f"max_failures: Ray killed trial workers for memory {kills} times ({killed}); give "
                                "each trial more memory (a smaller batch_size or pack, fewer max_concurrent trials, "
                                "more resources.cpu) and continue with --resume") from None
            log.warning("a trial's worker was killed for memory (%s); resuming the sweep", killed)
            tuner = restored()
    counts = r.read_results(path)["status"].value_counts().to_dict()
    log.info("sweep %s: %s (%d errors reported by Tune)", sweep.spec.name, counts, grid.num_errors)
    return SweepOutcome(path, counts)


def _killed_for_memory(error: BaseException) -> str | None:
    """The first line of the ``OutOfMemoryError`` (Ray's memory monitor killed a worker) behind ``error``, if any."""
    while error is not None and not isinstance(error, ray.exceptions.OutOfMemoryError):
        error = error.__cause__ or error.__context__
    return str(error).splitlines()[0] if error is not None else None


def _param_space(sweep: Sweep) -> dict[str, Any]:
    if sweep.spec.search:
        return {}  # the searcher hands out cells and sampled values
    return {"pack": tune.grid_search([pack.trial_config() for pack in sweep.packs])}


def _tune_config(sweep: Sweep) -> tune.TuneConfig:
    spec = sweep.spec
    search_alg = scheduler = None
    if spec.search:
        from equisweep.pipeline.sweep.search import PerCellSearch

        search_alg = PerCellSearch([{"pack": pack.trial_config()} for pack in sweep.packs], spec.search)
    if spec.scheduler:
        from equisweep.pipeline.sweep.scheduler import PerCellASHA

        if not spec.search:
            log.warning("scheduler: without search: every cell holds one trial, and ASHA compares trials only "
                        "within a cell, so it stops none early")

        scheduler = PerCellASHA(time_attr=m.EPOCH, max_t=max(cell.config.optim.epochs for cell in sweep.cells),
                                grace_period=spec.scheduler.grace_period,
                                reduction_factor=spec.scheduler.reduction_factor)
    return tune.TuneConfig(metric=m.VAL_ACC, mode="max", search_alg=search_alg, scheduler=scheduler,
                           num_samples=spec.search.num_samples * len(sweep.packs) if spec.search else 1,
                           max_concurrent_trials=spec.max_concurrent, reuse_actors=True,
                           trial_name_creator=trial_dirname, trial_dirname_creator=trial_dirname)


def _run_config(sweep: Sweep, verbose: int, callbacks: Sequence[tune.Callback]) -> tune.RunConfig:
    spec = sweep.spec
    cells = {r.cell_key({**pack.shared, "seed": cell.config.seed}): cell.index
             for pack in sweep.packs for cell in pack.cells}
    return tune.RunConfig(
        name=spec.name, storage_path=r.storage_uri(spec.storage), verbose=verbose,
        failure_config=tune.FailureConfig(max_failures=spec.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),  # the latest is what a retry resumes from
        sync_config=tune.SyncConfig(sync_artifacts=True),  # metrics.json, best.ckpt and W&B files reach storage
        callbacks=[ResultsTable(sweep_uri(sweep), spec.base_settings(), cells), *callbacks])


def connect(address: str | None, num_cpus: int | None = None) -> None:
    """Join the Ray cluster at ``address`` (``auto`` or ``HOST:PORT``; ``RAY_ADDRESS`` when unset, as under ``ray job
    submit``), or start an embedded one listening on loopback only (``loopback.py``). Reuses a connection. A Ray
    Client address (``ray://``) is refused: through it Tune would run on the cluster's head, writing where this
    process cannot read."""
    address = address or os.environ.get("RAY_ADDRESS")
    if address and address.startswith("ray://"):
        host = urlparse(address).hostname or "HEAD"
        raise UserError(f"address: {address!r} is a Ray Client address, where Tune runs on the head and this process "
                        f"cannot read its results; submit the sweep as a job instead: ray job submit --address "
                        f"http://{host}:8265 -- equisweep sweep SPEC")
    if address:
        _check_reachable(address)  # a wrong address is refused even where this process is connected already
    if ray.is_initialized():
        return
    if not address:
        with loopback_only():
            ray.init(address="local", include_dashboard=False, num_cpus=num_cpus, configure_logging=False,
                     log_to_driver=False)
        return
    try:
        ray.init(address=address, configure_logging=False, log_to_driver=False)
    except ConnectionError as err:
        raise UserError(f"address: cannot connect to a Ray cluster at {address!r} ({str(err).splitlines()[0]}); "
                        "start one with `ray start --head` or fix --address") from None


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds, in one line, where ``ray.init`` would wait a minute on an address nothing listens at."""
    if address == "auto":
        return
    parsed = urlparse(f"tcp://{address}")
    if parsed.hostname is None or parsed.port is None:
        raise UserError(f"address: {address!r} is not auto or HOST:PORT")
    try:
        socket.create_connection((parsed.hostname, parsed.port), timeout=timeout).close()
    except OSError as err:
        raise UserError(f"address: cannot reach a Ray cluster at {address!r} ({err.strerror or err}); start one "
                        "with `ray start --head` or fix --address") from None
