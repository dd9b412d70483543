"""The one equivariance assertion every test uses, built only on ``equisweep.groups``."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from equisweep.exactness.measured import act
from equisweep.groups import Group, get_group


def run_python(code: str) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter: what a new process imports, or how much it grows."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def relative_errors(fn: Callable[[Tensor], Tensor], x: Tensor, group: str | Group) -> dict[str, float]:
    """``||g·fn(x) - fn(g·x)|| / ||fn(x)||`` for every pixel-grid element g; ``x`` is an image or a 5-D map."""
    g = get_group(group)
    with torch.no_grad():
        return _errors(fn, x, g)


def _errors(fn: Callable[[Tensor], Tensor], x: Tensor, g: Group) -> dict[str, float]:
    reference = fn(x)
    errors = {}
    for e in g.grid_elements:
        moved_input = g.act_on_map(e, x) if x.dim() == 5 else g.act_on_image(e, x)
        errors[g.label(e)] = float((act(g, e, reference) - fn(moved_input)).norm() / reference.norm())
    return errors


def assert_equivariant(fn: Callable[[Tensor], Tensor], x: Tensor, group: str | Group, atol: float) -> None:
    """Fail unless ``fn`` commutes with every pixel-grid element of ``group`` up to relative error ``atol``."""
    errors = relative_errors(fn, x, group)
    worst = max(errors, key=errors.get)
    assert errors[worst] < atol, f"not equivariant: relative error {errors[worst]:.2e} at {worst} ({errors})"


def read_wandb_run(run_file: Path) -> dict:
    """Read an offline W&B run file (``run-<id>.wandb``: LevelDB-log framed protobuf ``Record``s) back into
    ``{"project", "group", "id", "job_type", "tags", "config", "summary", "history", "history_keys"}`` (``history``: one
    dict per logged step), so tests check what was really logged."""
    from wandb.proto import wandb_internal_pb2

    raw, block, pos = run_file.read_bytes(), 32768, 7  # 7: the ':W&B' file header
    payloads, pending = [], b""
    while pos + 7 <= len(raw):
        if block - pos % block < 7:  # a block's tail too short for a record header is padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", raw[pos:pos + 7])
        data, pos = raw[pos + 7:pos + 7 + length], pos + 7 + length
        if kind in (1, 2):  # full, first
            pending = data
        elif kind in (3, 4):  # middle, last
            pending += data
        if kind in (1, 4):
            payloads.append(pending)
    def key(item) -> str:
        return item.key or "/".join(item.nested_key)

    run: dict = {"config": {}, "summary": {}, "history": [], "history_keys": set()}
    for payload in payloads:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        kind = record.WhichOneof("record_type")
        if kind == "run":  # the run record carries the config given to wandb.init
            run.update(project=record.run.project, group=record.run.run_group, id=record.run.run_id,
                       job_type=record.run.job_type, tags=list(record.run.tags))
            run["config"].update({key(item): json.loads(item.value_json) for item in record.run.config.update})
        elif kind == "config":
            run["config"].update({key(item): json.loads(item.value_json) for item in record.config.update})
        elif kind == "summary":
            run["summary"].update({key(item): json.loads(item.value_json) for item in record.summary.update})
        elif kind == "history":
            run["history"].append({key(item): json.loads(item.value_json) for item in record.history.item})
            run["history_keys"].update(run["history"][-1])
    return run
