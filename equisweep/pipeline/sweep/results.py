"""A sweep's results on its storage (a local path or any URI pyarrow can open):

- ``results.parquet``: one row per trial, in the columns ``columns`` declares (identity and status, settings, the
  static ``exact`` flag, metrics),
- ``angles.parquet``: trial x test angle x accuracy,
- ``finished/<run id>.json``: the final result of each finished seed-run, the durable record a resumed sweep
  replays instead of training again (a copy that failed inside a finished pack: its ``error``).

A row is a seed-run: an unpacked trial's id is its run id; a packed trial's copies are ``<trial id>-seed<seed>``.

Every file is written whole and replaces the old one at once, so a reader (``equisweep sweep --status``, the
report) always sees a complete table, also while the sweep runs: on a local (or mounted) filesystem through a
temporary name unique to the writer, fsynced, then renamed (so two drivers never collide); on an object store by
one put, which the store makes atomic (there is no rename there, and nothing to fsync). ``angles.parquet`` is
written before ``results.parquet``, so a trial that a reader sees finished always has its angle rows.

The tables and the records hold the same finished results twice, so each mends the other on ``--resume``: the
driver rewrites damaged or missing tables from the records (and Tune's trials), and a finished row whose record is
missing has it written back from the tables (``write_back_records``). Reading a damaged table is a user error that
names this fix. Nothing here imports training code.
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
import pyarrow as pa
import pyarrow.fs as pafs

from equisweep.errors import UserError
from equisweep.pipeline import vocabulary as m
from equisweep.pipeline.sweep.columns import METRICS, check_final_result, declared_settings

RESULTS_FILE = "results.parquet"
ANGLES_FILE = "angles.parquet"
FINISHED_DIR = "finished"
# pending: not started, or interrupted with its driver (--resume runs it); stopped: ended early by the scheduler
STATUSES = ("finished", "running", "pending", "stopped", "failed")


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
    """What a finished trial reports last: ``run_one``'s metrics, JSON-safe (angle keys as strings), checked against
    the table's declared columns (``columns.check_final_result``)."""
    check_final_result({**results, m.EPOCH: epochs})
    return {**{key: value for key, value in results.items() if not isinstance(value, dict)},
            m.TEST_ACC_BY_ANGLE: {str(float(a)): acc for a, acc in results[m.TEST_ACC_BY_ANGLE].items()},
            **{key: dict(results.get(key, {})) for key in m.PER_KEY_RESULTS}, m.EPOCH: epochs}


def pack_result(copies: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What a finished packed trial reports last: each copy's final result (or ``{"error": why}``) by seed, the
    epochs its copies trained, and the mean validation accuracy of the copies that finished (what a scheduler
    reads). At least one copy finished: a pack whose copies all fail raises instead."""
    finished = [copy for copy in copies.values() if "error" not in copy]
    return {COPIES: copies, m.EPOCH: max(copy[m.EPOCH] for copy in finished),
            m.VAL_ACC: sum(copy[m.VAL_ACC] for copy in finished) / len(finished)}


def trial_row(trial_id: str, name: str, cell: int | None, settings: dict[str, Any], exact: bool | None,
              status: str, error: str | None, attempts: int, result: dict[str, Any]) -> dict[str, Any]:
    """One row of ``results.parquet``, in the declared columns (``columns``): identity, every run setting (flat or
    in groups) as one column per leaf, ``exact``, status and metrics (None where ``result`` lacks them)."""
    row: dict[str, Any] = {"trial_id": trial_id, "trial_name": name, "cell": cell, "status": status, "error": error,
                           "attempts": attempts}
    row.update({key: _cell(key, value) for key, value in declared_settings(settings).items()})
    row[m.EXACT] = exact  # None where not applicable (a trivial group) or not known
    row.update({key: result.get(key) for key in METRICS})
    row["trial_seconds"] = result.get("time_total_s")  # the trial's wall time under Tune: its compute cost
    row["started_at"] = started_at(result)
    for key, prefix in m.PER_KEY_RESULTS.items():
        row.update({f"{prefix}{entry}": value for entry, value in (result.get(key) or {}).items()})
    return row


def record_of_row(row: pd.Series, angles: pd.DataFrame) -> dict[str, Any]:
    """A finished row's record as the tables keep it (``trial_row`` read backwards, with the row's ``angles`` rows):
    every metric it holds (a checkpoint's path is not in the tables), the trial's time and when it started."""
    def kept(key: str) -> bool:
        return key in row.index and not pd.isna(row[key])

    def by_layer(prefix: str) -> dict[str, Any]:
        return {key.removeprefix(prefix): row[key] for key in row.index if key.startswith(prefix) and kept(key)}

    record = {key: row[key] for key in (*METRICS, "started_at") if kept(key)}
    return {**record, m.EXACT: exact_flag(row.get(m.EXACT)), "time_total_s": row.get("trial_seconds"),
            m.TEST_ACC_BY_ANGLE: {str(float(a)): acc for a, acc in zip(angles["angle"], angles["accuracy"])},
            **{key: by_layer(prefix) for key, prefix in m.PER_KEY_RESULTS.items()}}


def exact_flag(value: Any) -> bool | None:
    """A table's ``exact`` cell as a flag: None where it does not apply or is not known."""
    return None if value is None or pd.isna(value) else bool(value)


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
    """A setting as one table cell: a scalar as itself, a list or mapping (``angles``, ``wandb_tags``) as JSON text."""
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


REBUILD = "rebuild it from the finished records with: equisweep sweep SPEC --resume (SPEC: the sweep's YAML)"


class DamagedTable(UserError):
    """A table that cannot be read, or is missing although trials finished: ``--resume`` rebuilds it."""

    def __init__(self, uri: str, name: str, problem: str) -> None:
        self.problem = f"{name} {problem}"
        super().__init__(f"sweep_dir: {name} in {uri} {problem}; {REBUILD}")


def read_results(sweep_dir: str) -> pd.DataFrame:
    return _read_parquet(sweep_dir, RESULTS_FILE)


def read_angles(sweep_dir: str) -> pd.DataFrame:
    return _read_parquet(sweep_dir, ANGLES_FILE)


def damaged_tables(sweep_uri: str) -> list[str]:
    """Why each table a resumed driver must rebuild cannot be used (empty when both can, or when none is due yet)."""
    problems = []
    for read in (read_results, read_angles):
        try:
            read(sweep_uri)
        except DamagedTable as err:
            problems.append(err.problem)
        except UserError:
            pass  # missing before any trial finished: nothing to rebuild
    return problems


def write_back_records(sweep_uri: str) -> list[str]:
    """Write the record of each finished row of readable tables that has none (a driver can die between writing
    the two), so a resumed sweep replays it instead of training it again; the ids written back."""
    try:
        table, angles = read_results(sweep_uri), read_angles(sweep_uri)
    except UserError:
        return []  # no tables to take them from (a damaged one is rebuilt from the records instead)
    recorded = load_finished(sweep_uri)
    missing = table[(table["status"] == "finished") & ~table["trial_id"].isin(list(recorded))]
    for _, row in missing.iterrows():
        record_finished(sweep_uri, row["trial_id"], record_of_row(row, angles[angles["trial_id"] == row["trial_id"]]))
    return missing["trial_id"].tolist()


def record_finished(sweep_uri: str, trial_id: str, result: dict[str, Any]) -> None:
    """Write ``finished/<trial_id>.json``; a value JSON cannot hold is refused (``TypeError``) before any write."""
    data = json.dumps(to_json_value(result, f"the result of trial {trial_id}")).encode()
    put_file(sweep_uri, f"{FINISHED_DIR}/{trial_id}.json", data)


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
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    put_file(sweep_uri, name, buffer.getvalue())


def put_file(sweep_uri: str, name: str, data: bytes) -> None:
    """Replace ``<sweep_uri>/<name>`` by ``data`` at once (see the module docstring)."""
    fs, root = pafs.FileSystem.from_uri(sweep_uri)
    path = f"{root}/{name}"
    fs.create_dir(os.path.dirname(path), recursive=True)
    _put(fs, path, data)


def read_file(sweep_uri: str, name: str) -> bytes | None:
    """``<sweep_uri>/<name>``'s bytes, or None when there is no such file."""
    fs, root = pafs.FileSystem.from_uri(storage_uri(sweep_uri))
    if fs.get_file_info(f"{root}/{name}").type == pafs.FileType.NotFound:
        return None
    with fs.open_input_stream(f"{root}/{name}") as stream:
        return stream.readall()


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
    try:
        data = read_file(uri, name)
        if data is not None:
            return pd.read_parquet(io.BytesIO(data))
    except (pa.ArrowException, OSError) as err:  # truncated, overwritten, not Parquet, not a file
        raise DamagedTable(uri, name, f"is damaged ({str(err).partition('. ')[0]})") from None
    if load_finished(uri):
        raise DamagedTable(uri, name, "is missing although trials finished")
    raise UserError(f"sweep_dir: no {name} in {uri}; pass the directory of a sweep (<storage>/<name>) that has "
                    "started at least one trial")
