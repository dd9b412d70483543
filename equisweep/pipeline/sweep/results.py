"""A sweep's results on its storage (a local path or any URI pyarrow can open):

- ``results.parquet``: one row per trial (its settings, the static ``exact`` flag, its metrics, status and error),
- ``angles.parquet``: trial x test angle x accuracy,
- ``finished/<run id>.json``: the final result of each finished seed-run, the durable record a resumed sweep
  replays instead of training again (a copy that failed inside a finished pack: its ``error``).

A row is a seed-run: an unpacked trial's id is its run id; a packed trial's copies are ``<trial id>-seed<seed>``.

Every file is written whole and replaces the old one at once, so a reader (``equisweep sweep --status``, the
report) always sees a complete table, also while the sweep runs: on a local (or mounted) filesystem through a
temporary name unique to the writer, fsynced, then renamed (so two drivers never collide); on an object store by
one put, which the store makes atomic (there is no rename there, and nothing to fsync). ``angles.parquet`` is
written before ``results.parquet``, so a trial that a reader sees finished always has its angle rows.
Nothing here imports training code.
"""

from __future__ import annotations

import io
import json
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.fs as pafs

from equisweep.errors import UserError
from equisweep.pipeline.train import metrics as m
from equisweep.pipeline.train.metrics import LAYER_ERROR_PREFIX, RELAXATION_PREFIX

RESULTS_FILE = "results.parquet"
ANGLES_FILE = "angles.parquet"
FINISHED_DIR = "finished"
STATUSES = ("finished", "running", "pending", "stopped", "failed")  # stopped: ended early by the scheduler
SCALAR_METRICS = (m.VAL_ACC, m.TEST_ACC_UPRIGHT, m.TEST_ACC_ORBIT, m.TEST_ACC_MEAN_ANGLES, m.TEST_ACC_MIN_ANGLES,
                  m.EQ_ERROR, m.LEE, m.PARAMS, m.TRAIN_SECONDS, m.BEST_EPOCH, m.EPOCH, m.TRAIN_LOSS)



def storage_uri(storage: str) -> str:
    """A URI stays as given; a local path becomes absolute (trials run in other working directories)."""
    return storage if "://" in storage else str(Path(storage).expanduser().absolute())


def cell_key(overrides: dict[str, Any]) -> str:
    return json.dumps(overrides, sort_keys=True)


def pack_of(config: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
    """A trial config's shared overrides (the cell less its seed) and the seeds it trains."""
    pack = config.get("pack", {})
    return pack.get("cell", {}), list(pack.get("seeds", []))


def run_id(trial: str, seed: int, packed: bool) -> str:
    """The id (or name) of one seed-run of a trial, from the trial's id (or name): the trial's own when it trains
    one seed."""
    return f"{trial}-seed{seed}" if packed else trial


COPIES = "copies"  # a packed trial's final result: {str(seed): the copy's final result, or {"error": why}}


def final_result(results: dict[str, Any], epochs: int) -> dict[str, Any]:
    """What a finished trial reports last: ``run_one``'s metrics, JSON-safe (angle keys as strings)."""
    return {**{key: value for key, value in results.items() if not isinstance(value, dict)},
            m.TEST_ACC_BY_ANGLE: {str(float(a)): acc for a, acc in results[m.TEST_ACC_BY_ANGLE].items()},
            m.EQ_ERROR_BY_LAYER: dict(results[m.EQ_ERROR_BY_LAYER]),
            m.RELAXATION_BY_LAYER: dict(results.get(m.RELAXATION_BY_LAYER, {})), m.EPOCH: epochs}


def pack_result(copies: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What a finished packed trial reports last: each copy's final result (or ``{"error": why}``) by seed, the
    epochs its copies trained, and the mean validation accuracy of the copies that finished (what a scheduler
    reads). At least one copy finished: a pack whose copies all fail raises instead."""
    finished = [copy for copy in copies.values() if "error" not in copy]
    return {COPIES: copies, m.EPOCH: max(copy[m.EPOCH] for copy in finished),
            m.VAL_ACC: sum(copy[m.VAL_ACC] for copy in finished) / len(finished)}


def trial_row(trial_id: str, name: str, cell: int | None, settings: dict[str, Any], exact: bool | None,
              status: str, error: str | None, attempts: int, result: dict[str, Any]) -> dict[str, Any]:
    """One row of ``results.parquet``: identity, every scalar run setting, ``exact``, status and metrics."""
    row: dict[str, Any] = {"trial_id": trial_id, "trial_name": name, "cell": cell, "status": status, "error": error,
                           "attempts": attempts}
    for key, value in settings.items():
        if isinstance(value, dict):  # wandb: {project, entity, group, mode, tags} -> wandb_project, ...
            row.update({f"{key}_{sub}": _cell(f"{key}.{sub}", v) for sub, v in value.items()})
        else:
            row[key] = _cell(key, value)
    row[m.EXACT] = exact  # None where not applicable (a trivial group) or not known
    row.update({key: result.get(key) for key in SCALAR_METRICS})
    row["trial_seconds"] = result.get("time_total_s")  # the trial's wall time under Tune: its compute cost
    row["started_at"] = started_at(result)
    row.update({f"{LAYER_ERROR_PREFIX}{layer}": value
                for layer, value in (result.get(m.EQ_ERROR_BY_LAYER) or {}).items()})
    row.update({f"{RELAXATION_PREFIX}{layer}": value
                for layer, value in (result.get(m.RELAXATION_BY_LAYER) or {}).items()})
    return row


def started_at(result: dict[str, Any]) -> float | None:
    """When the trial started (Unix seconds): as its finished record keeps it, else Tune's clock at its last report
    less its time so far; None before it reported (Tune's first default result has no time yet)."""
    if "started_at" in result:
        return result["started_at"]
    return result["timestamp"] - result["time_total_s"] if {"timestamp", "time_total_s"} <= result.keys() else None


def angle_rows(trial_id: str, result: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"trial_id": trial_id, "angle": float(angle), "accuracy": float(acc)}
            for angle, acc in (result.get(m.TEST_ACC_BY_ANGLE) or {}).items()]


def _cell(key: str, value: Any) -> Any:
    """A setting as one table cell: a scalar as itself, a list or mapping (``angles``, ``wandb.tags``) as JSON text."""
    value = to_json_value(value, key)
    return json.dumps(value) if isinstance(value, list | dict) else value


def to_json_value(value: Any, where: str) -> Any:
    """``value`` as plain JSON data: NumPy scalars and arrays become Python numbers and lists, tuples lists; any
    other type is refused (``TypeError`` naming ``where``), never turned into its ``str``."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): to_json_value(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json_value(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise TypeError(f"{where}: a {type(value).__name__} cannot be stored as JSON; report numbers, strings, lists "
                    "or mappings")


def write_tables(sweep_uri: str, rows: list[dict[str, Any]], angles: list[dict[str, Any]]) -> None:
    """Angles first: a reader that sees a trial finished in ``results.parquet`` finds its angle rows."""
    results = pd.DataFrame(rows).sort_values(["cell", "trial_id"], na_position="last", kind="stable")
    _write_parquet(sweep_uri, ANGLES_FILE, pd.DataFrame(angles, columns=["trial_id", "angle", "accuracy"]))
    _write_parquet(sweep_uri, RESULTS_FILE, results)


def read_results(sweep_dir: str) -> pd.DataFrame:
    return _read_parquet(sweep_dir, RESULTS_FILE)


def read_angles(sweep_dir: str) -> pd.DataFrame:
    return _read_parquet(sweep_dir, ANGLES_FILE)


def record_finished(sweep_uri: str, trial_id: str, result: dict[str, Any]) -> None:
    """Write ``finished/<trial_id>.json``; a value JSON cannot hold is refused (``TypeError``) before any write."""
    data = json.dumps(to_json_value(result, f"the result of trial {trial_id}")).encode()
    fs, root = pafs.FileSystem.from_uri(sweep_uri)
    fs.create_dir(f"{root}/{FINISHED_DIR}", recursive=True)
    _put(fs, f"{root}/{FINISHED_DIR}/{trial_id}.json", data)


def load_finished(sweep_uri: str) -> dict[str, dict[str, Any]]:
    fs, root = pafs.FileSystem.from_uri(sweep_uri)
    selector = pafs.FileSelector(f"{root}/{FINISHED_DIR}", allow_not_found=True)
    records = {}
    for info in fs.get_file_info(selector):
        if info.is_file and info.base_name.endswith(".json"):
            with fs.open_input_stream(info.path) as stream:
                records[info.base_name.removesuffix(".json")] = json.loads(stream.readall())
    return records


def _write_parquet(sweep_uri: str, name: str, frame: pd.DataFrame) -> None:
    fs, root = pafs.FileSystem.from_uri(sweep_uri)
    fs.create_dir(root, recursive=True)
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    _put(fs, f"{root}/{name}", buffer.getvalue())


def _put(fs: pafs.FileSystem, path: str, data: bytes) -> None:
    """Replace ``path`` by ``data`` at once: readers never see half a file (see the module docstring)."""
    if not isinstance(fs, pafs.LocalFileSystem):
        with fs.open_output_stream(path) as stream:  # an object store's put replaces the object atomically
            stream.write(data)
        return
    tmp = f"{path}.{uuid.uuid4().hex}.tmp"  # unique: a second driver writing the same table never shares it
    try:
        with open(tmp, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())  # the bytes are on disk before the name points at them
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    directory = os.open(os.path.dirname(path), os.O_RDONLY)
    try:
        os.fsync(directory)  # and so is the rename
    finally:
        os.close(directory)


def _read_parquet(sweep_dir: str, name: str) -> pd.DataFrame:
    uri = storage_uri(sweep_dir)
    fs, root = pafs.FileSystem.from_uri(uri)
    path = f"{root}/{name}"
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        raise UserError(f"sweep_dir: no {name} in {uri}; pass the directory of a sweep (<storage>/<name>) that "
                        "has started at least one trial")
    with fs.open_input_file(path) as stream:
        return pd.read_parquet(stream)
