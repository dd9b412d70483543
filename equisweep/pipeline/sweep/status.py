"""A sweep's progress, read from its ``results.parquet`` (``equisweep sweep --status DIR [--watch]``).

The text opens with one line ``NAME: N trials, N finished, N running, N pending, N stopped, N failed``, then one
line per failed trial with its reason, the elapsed time with an estimate of the time left, the counts per arm and
one line per running trial (its epoch and latest ``val_acc``). It reads only the table and the driver's record
(``heartbeat.py``), so it works on any storage they are on, while the sweep runs and after. Trials left pending or
running by a driver that is gone are not running: then the time left gives way to that news and the command that
resumes the sweep.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pandas as pd

from equisweep.pipeline import vocabulary as m
from equisweep.pipeline.sweep.columns import METHOD_SETTINGS
from equisweep.pipeline.sweep.heartbeat import STALE_S, process_gone, read_driver
from equisweep.pipeline.sweep.results import STATUSES, read_results, storage_uri

ACTIVE = ("pending", "running")  # a sweep with none of these is over


def status_text(sweep_dir: str, now: float | None = None) -> str:
    """The progress of the sweep at ``sweep_dir`` at time ``now`` (Unix seconds; default: the clock)."""
    now = time.time() if now is None else now
    table = read_results(sweep_dir)
    return _describe(sweep_dir, table, now, _driver_gone(sweep_dir, now))


def watch_status(sweep_dir: str, interval: float) -> Iterator[str]:
    """``status_text`` every ``interval`` seconds, ending with the first text in which no trial is pending or
    running, or whose driver is gone (its trials then wait for ``--resume``)."""
    while True:
        now, table = time.time(), read_results(sweep_dir)
        gone = _driver_gone(sweep_dir, now)
        yield _describe(sweep_dir, table, now, gone)
        if gone or not table["status"].isin(ACTIVE).any():
            return
        time.sleep(interval)


def _driver_gone(sweep_dir: str, now: float) -> str | None:
    """Why the sweep's driver is gone (it ended, its process is gone, or its heartbeat is stale); None while it
    lives, and for a sweep whose driver kept no record."""
    driver = read_driver(sweep_dir)
    if driver is None:
        return None
    silent = f"last heartbeat {_duration(now - driver.heartbeat)} ago"
    if driver.ended_at is not None:
        return f"the driver (pid {driver.pid} on {driver.host}) ended {_duration(now - driver.ended_at)} ago"
    if process_gone(driver):
        return f"the driver is gone (no process {driver.pid} on {driver.host}; {silent})"
    if now - driver.heartbeat > STALE_S:
        return f"the driver is gone (pid {driver.pid} on {driver.host}: {silent})"
    return None


def _describe(sweep_dir: str, table: pd.DataFrame, now: float, driver_gone: str | None) -> str:
    counts = table["status"].value_counts().to_dict()
    lines = [f"{Path(sweep_dir).name}: {len(table)} trials, "
             + ", ".join(f"{counts.get(status, 0)} {status}" for status in STATUSES)]
    lines += [f"  failed {row.trial_id}: {row.error}" for row in table[table["status"] == "failed"].itertuples()]
    if driver_gone and table["status"].isin(ACTIVE).any():  # nothing runs: no time left to estimate
        storage = storage_uri(sweep_dir).rstrip("/").rpartition("/")[0]
        lines += [f"stopped: {driver_gone}; its running and pending trials wait",
                  f"  resume with: equisweep sweep SPEC --resume --storage {storage} (SPEC: the sweep's YAML)"]
    else:
        lines.append(_timing(table, now))
    arms = pd.Series(_arms(table), index=table.index, dtype=object)
    per_arm = table.groupby([arms, "status"], sort=False).size().unstack(fill_value=0)
    width = max(len("arm"), *(len(arm) for arm in per_arm.index))
    lines.append("arm".ljust(width) + "".join(f"{status:>10}" for status in STATUSES))
    lines += [arm.ljust(width) + "".join(f"{by_status.get(status, 0):>10}" for status in STATUSES)
              for arm, by_status in per_arm.iterrows()]
    lines += [f"  running {row.trial_id}  {arms[index]}  epoch {_number(row.epoch, 'd')}/{row.epochs}  "
              f"val_acc {_number(row.val_acc, '.3f')}" for index, row in table[table["status"] == "running"].iterrows()]
    return "\n".join(lines)


def _timing(table: pd.DataFrame, now: float) -> str:
    """``elapsed H:MM:SS, about H:MM:SS left``.

    Elapsed runs from the earliest trial start the table records (``started_at``) to now, or to the last trial's
    end once none is pending or running. The time left assumes every trial still to come costs what a finished
    trial cost on average (``trial_seconds``; trials stopped early by the scheduler are left out, they would make
    it look cheap) and that as many trials keep running at once as run now: the work left (a mean trial per
    pending trial, plus what each running trial has yet to do of its mean) divided by the trials running now (at
    least one). It is rough where arms cost very differently, and unknown until a trial has finished.
    """
    status = table["status"]
    started = pd.to_numeric(table.get("started_at", pd.Series(None, index=table.index, dtype=float)))
    seconds = pd.to_numeric(table["trial_seconds"])
    if not status.isin(ACTIVE).any():
        return f"elapsed {_duration((started + seconds).max() - started.min())}, done"
    elapsed = f"elapsed {_duration(now - started.min())}"
    costs = seconds[status == "finished"].dropna()
    if costs.empty:
        return f"{elapsed}, time left unknown until a trial finishes"
    running = status == "running"
    so_far = (now - started[running]).fillna(seconds[running]).fillna(0)  # a trial not yet dated: its reported time
    work = (status == "pending").sum() * costs.mean() + (costs.mean() - so_far).clip(lower=0).sum()
    return (f"{elapsed}, about {_duration(work / max(running.sum(), 1))} left (a finished trial took "
            f"{_duration(costs.mean())} on average; {running.sum()} running at once)")


def _arms(table: pd.DataFrame) -> list[str]:
    """Each trial's arm: its wrapper, penalty and the options that tell arms apart included, the word exact/approx
    its backbone's; a table from before a setting existed has its default."""
    rows = table.to_dict("records")
    options = m.method_options(rows, METHOD_SETTINGS)
    named = ("relaxation", "subsampling", "invariance", "eq_penalty", "eq_penalty_kind")
    labels = []
    for row, exact in zip(rows, m.backbone_verdicts(rows)):
        given = {key: row[key] for key in named if key in row and not pd.isna(row[key])}
        labels.append(m.arm_label(row["group"], int(row["input_size"]), exact, **given,
                                  options={key: row[key] for key in options}))
    return labels


def _number(value: object, spec: str) -> str:
    return "-" if pd.isna(value) else format(int(value) if spec == "d" else float(value), spec)


def _duration(seconds: float) -> str:
    return "-" if pd.isna(seconds) else str(timedelta(seconds=round(seconds)))
