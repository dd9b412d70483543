"""The sweep driver's Tune callback, ``ResultsTable``: it keeps the sweep's record on its storage as trials start,
finish and fail (the Parquet tables and each finished result, ``results.py``) and the driver's heartbeat
(``heartbeat.py``), using Tune's public ``Callback`` hooks only.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune.experiment import Trial
from ray.tune.result import DONE, EXPR_RESULT_FILE

from equisweep.errors import UserError
from equisweep.pipeline import vocabulary as m
from equisweep.pipeline.sweep import results as r
from equisweep.pipeline.sweep.heartbeat import Heartbeat
from equisweep.pipeline.sweep.spec import static_exact
from equisweep.pipeline.train.config import RunConfig

log = logging.getLogger(__name__)

COPY_VAL_ACC = "copy_val_acc"  # a pack's epoch report: each copy's validation accuracy, in the order of its seeds
_STATUS = {Trial.RUNNING: "running", Trial.TERMINATED: "stopped", Trial.ERROR: "failed"}  # else pending


class ResultsTable(tune.Callback):
    """Rewrites ``results.parquet`` and ``angles.parquet`` whenever a trial starts, finishes or fails, and records
    each finished trial's result (see ``results.py``). Every seed-run of the sweep has its row: one whose trial
    Tune has not created yet (it creates them as ``max_concurrent`` lets them run) is pending. Keeps the driver's
    heartbeat on the sweep's storage (``heartbeat.py``); at the end, gives each trial Tune never started an empty
    result file (``_give_result_file``).
    Runs in the driver.

    Writing never changes a trial's status: Tune would turn an exception raised here into a failed trial (or run a
    finished one again), so a failed write is retried, logged as an error, and left to the next write."""

    def __init__(self, sweep_uri: str, base: dict[str, Any], cells: dict[str, int]) -> None:
        self.sweep_uri, self.base, self.cells = sweep_uri, base, cells
        self.finished: dict[str, dict] = {}  # trial id -> its final result
        self._recorded: set[str] = set()  # the finished trials whose record is on storage
        self._started: set[str] = set()  # the trials this driver started: Tune gave each its result file
        self._exact: dict[str, bool | None] = {}
        self._damaged: list[str] = []  # why the tables on storage could not be used: the next write rebuilds them
        self._heartbeat = Heartbeat(sweep_uri)

    def setup(self, **info) -> None:
        self.finished = r.load_finished(self.sweep_uri)  # also after a restore: this object was unpickled
        self._recorded = set(self.finished)
        self._started = set()
        self._damaged = r.damaged_tables(self.sweep_uri)
        self._heartbeat = Heartbeat(self.sweep_uri)  # this process's: a restored sweep has a new driver
        self.on_step_end()

    def on_step_end(self, **info) -> None:
        _without_raising("refresh the driver's heartbeat", self._heartbeat.beat)

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info) -> None:
        self._started.add(trial.trial_id)
        self._write(trials, starting=trial.trial_id)  # Tune marks it RUNNING only after this call

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info) -> None:
        self._adopt(trial)  # Tune marks it TERMINATED only after this call
        self._write(trials)

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info) -> None:
        self._write(trials)

    def on_experiment_end(self, trials: list[Trial], **info) -> None:
        self._write(trials)
        for trial in trials:  # a trial without a directory yet (Tune had not scheduled it) has nowhere for one
            if trial.trial_id not in self._started and trial.relative_logdir:
                _without_raising(f"give {trial} an empty result file", _give_result_file, self.sweep_uri, trial)
        _without_raising("mark the driver ended", self._heartbeat.end)

    def _adopt(self, trial: Trial) -> None:
        """Count ``trial``'s seed-runs finished if its last result holds their test metrics (or a copy's error)."""
        result = trial.last_result or {}
        _, seeds = r.pack_of(trial.config)
        started = r.started_at(result)
        if r.COPIES in result:
            share = result.get("time_total_s", 0.0) / len(seeds)  # each copy's part of the pack's time
            for seed in seeds:
                self.finished.setdefault(r.run_id(trial.trial_id, seed, True),
                                         {**result[r.COPIES][str(seed)], "time_total_s": share, "started_at": started})
        elif trial.trial_id not in self.finished and m.TEST_ACC_UPRIGHT in result:
            record = {key: value for key, value in result.items() if key not in _TUNE_KEYS}
            self.finished[trial.trial_id] = {**record, "started_at": started}

    def _write(self, trials: list[Trial], starting: str | None = None) -> None:
        for trial in trials:
            if trial.status == Trial.TERMINATED:
                self._adopt(trial)  # e.g. restored from Tune's state, its record lost with a failed write
        for run in sorted(self.finished.keys() - self._recorded):
            if _without_raising(f"record the result of {run}", r.record_finished, self.sweep_uri, run,
                                self.finished[run]):
                self._recorded.add(run)
        _without_raising("write the results tables", self._write_tables, trials, starting)

    def _write_tables(self, trials: list[Trial], starting: str | None) -> None:
        rows, angles = [], []
        for trial in trials:
            shared, seeds = r.pack_of(trial.config)
            packed = len(seeds) > 1
            for k, seed in enumerate(seeds):
                run = r.run_id(trial.trial_id, seed, packed)
                settings = {**self.base, **shared, **trial.config.get("search", {}), "seed": seed}
                record = self.finished.get(run)
                status = "running" if trial.trial_id == starting else _status(trial)
                error = _reason(trial) if status == "failed" else None
                if record is not None:
                    status, error = ("failed", record["error"]) if "error" in record else ("finished", None)
                rows.append(r.trial_row(
                    run, r.run_id(str(trial), seed, packed), self.cells.get(r.cell_key(
                        {**shared, "seed": seed})), settings, self._exact_of(run, settings), status, error,
                    trial.num_failures, record or _copy_result(trial.last_result or {}, k)))
                angles.extend(r.angle_rows(run, record) if status == "finished" else [])
        rows += self._uncreated_rows(trials)
        r.write_tables(self.sweep_uri, rows, angles)
        if self._damaged:
            log.warning("%s: rebuilt %s and %s from the finished records: %d rows, %d finished",
                        "; ".join(self._damaged), r.RESULTS_FILE, r.ANGLES_FILE, len(rows),
                        sum(row["status"] == "finished" for row in rows))
            self._damaged = []

    def _uncreated_rows(self, trials: list[Trial]) -> list[dict[str, Any]]:
        """A pending row, without a trial id or name, for each seed-run of ``cells`` that no trial trains yet."""
        created = {r.cell_key({**shared, "seed": seed}) for shared, seeds in map(r.pack_of, (t.config for t in trials))
                   for seed in seeds}
        rows = []
        for key in sorted(self.cells.keys() - created, key=self.cells.get):
            settings = {**self.base, **json.loads(key)}
            rows.append(r.trial_row(None, None, self.cells[key], settings, self._exact_of(key, settings), "pending",
                                    None, 0, {}))
        return rows

    def _exact_of(self, trial_id: str, settings: dict[str, Any]) -> bool | None:
        """The static exact flag; None for a trivial group (not applicable) or a model that cannot be built."""
        if trial_id not in self._exact:
            try:
                self._exact[trial_id] = static_exact(RunConfig.from_flat(settings))
            except (UserError, ValueError):
                self._exact[trial_id] = None  # a searched value the model cannot take: the trial fails and says so
        return self._exact[trial_id]


# Keys Tune adds to every result; a finished trial's record keeps only what the trial reported, and when it started.
_TUNE_KEYS = frozenset({"timestamp", "checkpoint_dir_name", "done", "training_iteration", "trial_id", "date",
                        "time_this_iter_s", "pid", "hostname", "node_ip", "config",
                        "time_since_restore", "iterations_since_restore", "experiment_tag", "should_checkpoint"})


WRITE_ATTEMPTS = 3
WRITE_BACKOFF_S = 0.25  # then doubled; a write that still fails is left to the next one


def _without_raising(what: str, write: Callable[..., None], *args: Any) -> bool:
    """Call ``write(*args)``, retrying an I/O error with a short backoff; log a failure as an error and return
    whether it succeeded. Never raises (see ``ResultsTable``)."""
    for attempt in range(WRITE_ATTEMPTS):
        if attempt:
            time.sleep(WRITE_BACKOFF_S * 2 ** (attempt - 1))
        try:
            write(*args)
            return True
        except OSError as err:
            error = err
        except Exception:  # not the storage: retrying cannot help
            log.error("could not %s; trial statuses are unchanged", what, exc_info=True)
            return False
    log.error("could not %s (%d attempts); trial statuses are unchanged and the next write tries again", what,
              WRITE_ATTEMPTS, exc_info=error)
    return False


def _give_result_file(sweep_uri: str, trial: Trial) -> None:
    """Give ``trial`` the empty result file of a trial that has reported nothing, where it has none. Tune reads every
    trial's result file once its run ends, and a trial it never started (an interrupted sweep leaves them) has none:
    Tune would print a ``FileNotFoundError`` for each. An empty file reads as no results; the trial, resumed, writes
    its own."""
    name = f"{trial.relative_logdir}/{EXPR_RESULT_FILE}"
    if r.read_file(sweep_uri, name) is None:
        r.put_file(sweep_uri, name, b"")


def _status(trial: Trial) -> str:
    """``trial``'s status in the table. Tune ends a trial as TERMINATED both when it completes it (its last result
    ``done``: it finished, or the scheduler stopped it early) and when the experiment ends with it still running
    (Ctrl-C): that one has not ended, ``--resume`` runs it on, so it is pending."""
    if trial.status == Trial.TERMINATED and not trial.last_result.get(DONE):
        return "pending"
    return _STATUS.get(trial.status, "pending")


def _copy_result(result: dict[str, Any], k: int) -> dict[str, Any]:
    """A running trial's last report as seen by its k-th seed: a pack reports each copy's validation accuracy."""
    if COPY_VAL_ACC not in result:
        return result
    return {**result, m.VAL_ACC: result[COPY_VAL_ACC][k]}


def _reason(trial: Trial) -> str:
    """The exception that ended ``trial``, in one line (the user's exception, not Ray's wrapper)."""
    try:
        error = trial.get_pickled_error()
    except Exception:  # an unreadable pickle must not stop the table being written
        error = None
    cause = getattr(error, "cause", None) or error
    if cause is not None:
        text = f"{type(cause).__name__}: {cause}"
    elif trial.error_file and Path(trial.error_file).is_file():
        text = Path(trial.error_file).read_text()
    else:
        return "unknown error"
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if cause is not None else lines[-1]
