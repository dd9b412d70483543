"""Test helpers: the equivariance oracle every test uses, a fresh interpreter, and a reader of offline W&B runs.

The oracle is written here from first principles with ``torch.rot90``/``torch.flip`` and 2x2 matrices, so it stays
independent of ``equisweep.groups`` and ``equisweep.exactness``, the code it checks. Its conventions are the
project's: element ``r^k m^a`` mirrors left-right first (``flip`` of the last axis), then turns by ``k`` steps of
360/N degrees (one quarter turn is ``rot90(x, 1, dims=(-2, -1))``); a group map's axis ``-3`` holds |G| slots indexed
``a * N + k``, and ``(g·f)(h, x) = f(g⁻¹h, g⁻¹x)``.
"""

from __future__ import annotations

import json
import math
import re
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor


def run_python(code: str) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter: what a new process imports, or how much it grows."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def _rotations_and_mirrors(group) -> tuple[int, bool]:
    """(N, mirrors) of ``group``: a name (z2, p4, p4m, cN, dN) or any object with such a ``.name``."""
    name = str(getattr(group, "name", group)).lower()
    named = {"z2": (1, False), "p4": (4, False), "p4m": (4, True)}
    if name in named:
        return named[name]
    kind, n = re.fullmatch(r"([cd])(\d+)", name).groups()
    return int(n), kind == "d"


def _matrix(n: int, rotation: int, mirror: int) -> Tensor:
    """``r^rotation m^mirror`` as a 2x2 integer-rounded matrix on the plane (mirror first, then rotate)."""
    angle = 2 * math.pi * rotation / n
    rotate = torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    flip = torch.tensor([[-1.0, 0.0], [0.0, 1.0]]) if mirror else torch.eye(2)
    return rotate @ flip


def _grid_elements(group) -> list[tuple[str, int, int, list[int]]]:
    """(label, quarter turns, mirror, slot permutation) for every element that maps the pixel grid onto itself;
    ``perm[h]`` is the slot of ``g⁻¹h``, found by multiplying matrices."""
    n, mirrors = _rotations_and_mirrors(group)
    elements = [(k, a) for a in range(2 if mirrors else 1) for k in range(n)]
    matrices = [_matrix(n, k, a) for k, a in elements]
    out = []
    for k, a in elements:
        if (4 * k) % n:
            continue
        inverse = torch.linalg.inv(_matrix(n, k, a))
        perm = [next(i for i, m in enumerate(matrices) if torch.allclose(inverse @ h, m, atol=1e-6))
                for h in matrices]
        out.append((f"r{360 * k / n:g}" + ("m" if a else ""), 4 * k // n, a, perm))
    return out


def _move(y: Tensor, turns: int, mirror: int, perm: list[int]) -> Tensor:
    """The element acting on ``y``: a group map [B, C, |G|, H, W], an image [B, C, H, W], fibres [B, C, |G|], or
    an invariant output of any other rank."""
    if y.dim() in (3, 5):
        y = y.index_select(-3 if y.dim() == 5 else -1, torch.tensor(perm, device=y.device))
    if y.dim() in (4, 5):
        y = torch.flip(y, dims=(-1,)) if mirror else y
        y = torch.rot90(y, turns, dims=(-2, -1))
    return y


def relative_errors(fn: Callable[[Tensor], Tensor], x: Tensor, group) -> dict[str, float]:
    """``||g·fn(x) - fn(g·x)|| / ||fn(x)||`` for every pixel-grid element g; ``x`` is an image or a 5-D map."""
    errors = {}
    with torch.no_grad():
        reference = fn(x)
        for label, turns, mirror, perm in _grid_elements(group):
            moved_input = _move(x, turns, mirror, perm)
            moved_output = _move(reference, turns, mirror, perm)
            errors[label] = float((moved_output - fn(moved_input)).norm() / reference.norm())
    return errors


def assert_equivariant(fn: Callable[[Tensor], Tensor], x: Tensor, group, atol: float) -> None:
    """Fail unless ``fn`` commutes with every pixel-grid element of ``group`` up to relative error ``atol``."""
    errors = relative_errors(fn, x, group)
    worst = max(errors, key=errors.get)
    assert errors[worst] < atol, f"not equivariant: relative error {errors[worst]:.2e} at {worst} ({errors})"


def read_wandb_run(run_file: Path) -> dict:
    """Read an offline W&B run file (``run-<id>.wandb``: LevelDB-log framed protobuf ``Record``s) back into
    ``{"project", "group", "id", "job_type", "tags", "config", "summary", "history", "history_keys", "exit_code"}``
    (``history``: one dict per logged step; ``exit_code``: how the run ended, None while it has not), so tests check
    what was really logged."""
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

    run: dict = {"config": {}, "summary": {}, "history": [], "history_keys": set(), "exit_code": None}
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
        elif kind == "exit":
            run["exit_code"] = record.exit.exit_code
    return run
