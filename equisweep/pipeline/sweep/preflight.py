"""The pre-flight check behind ``equisweep sweep SPEC --dry-run``: where a sweep would run and how, and what would
go wrong, before any trial starts.

``preflight`` returns a few header lines (storage, W&B mode, resources, concurrency) and one warning line per
problem it finds: a sweep of that name already at its storage, a cluster address it cannot use or local storage on a
cluster of several nodes, GPUs requested where none is visible, a dataset missing from ``data_dir``, a grid axis that
overrides a variant's setting, an ASHA grace period that stops nothing. Nothing is written and Ray is not started (a
cluster given by ``--address`` is joined to count its nodes); the CLI prints the warnings to stderr.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import ray
import torch

from equisweep.datamodules.sources import FOLDER, missing_file
from equisweep.errors import UserError
from equisweep.files import unwritable
from equisweep.pipeline.sweep.driver import check_resumable, connect, sweep_uri
from equisweep.pipeline.sweep.spec import Sweep
from equisweep.pipeline.train.tracking import explain_mode


@dataclass(frozen=True)
class Preflight:
    header: tuple[str, ...]  # ``key: value`` lines, printed above the trial table
    warnings: tuple[str, ...]  # one line each


def preflight(sweep: Sweep, resume: bool = False, num_cpus: int | None = None, address: str | None = None
              ) -> Preflight:
    """Check ``sweep`` as ``equisweep sweep`` would run it (with ``--resume``, with ``--num-cpus`` for an embedded
    Ray, on the cluster at ``address``) without starting it."""
    spec = sweep.spec
    try:
        exists, found = check_resumable(sweep, resume=False), []
    except UserError as err:  # it exists: a run without --resume would be refused, so say why
        exists, found = True, [] if resume else [str(err)]
    wandb = spec.base.wandb
    mode, why = explain_mode(wandb.mode)
    mode = f"{mode} (auto: {why})" if wandb.mode == "auto" else mode
    state = ("exists, --resume continues it" if resume else "exists") if exists else "new"
    header = (
        f"storage: {sweep_uri(sweep)} ({state})",
        f"wandb: {mode}, project {wandb.project}, group {wandb.group or spec.name}",
        f"resources: {spec.resources.cpu:g} CPU, {spec.resources.gpu:g} GPU per trial",
        f"concurrency: {_concurrency(sweep, num_cpus)}",
    )
    storage = storage_problem(sweep)
    warnings = [*found, *([storage] if storage else []), *_cluster_warnings(sweep, address), *_gpu_warnings(sweep),
                *_dataset_warnings(sweep), *_override_warnings(sweep), *_scheduler_warnings(sweep)]
    return Preflight(header, tuple(warnings))


def storage_problem(sweep: Sweep) -> str | None:
    """Why the sweep's local storage cannot be written here (None if it can; a URI's filesystem answers for itself)."""
    uri = sweep_uri(sweep)
    problem = None if "://" in uri else unwritable(Path(uri))
    return f"storage: cannot write {uri}: {problem}; pass another --storage" if problem else None


def _concurrency(sweep: Sweep, num_cpus: int | None) -> str:
    """What bounds the trials running at once: ``max_concurrent``, else the resources (counted on this machine,
    which is what an embedded Ray has; a cluster has its own)."""
    resources = sweep.spec.resources
    fit = math.floor((num_cpus or os.cpu_count() or 1) / resources.cpu)
    if resources.gpu:
        fit = min(fit, math.floor(torch.cuda.device_count() / resources.gpu))
    if sweep.spec.max_concurrent:
        return f"at most {sweep.spec.max_concurrent} trials at once (max_concurrent); {fit} fit on this machine"
    return f"as many trials at once as the CPUs and GPUs allow: {fit} on this machine"


def _cluster_warnings(sweep: Sweep, address: str | None) -> list[str]:
    """On a cluster (``address``, ``RAY_ADDRESS``, or one this process joined): why joining it fails, or a local
    storage path while the cluster has more than one node, whose other nodes would write their trials to their own
    disks. Joining only reads the cluster; an embedded Ray is one node and is not started."""
    if not (address or os.environ.get("RAY_ADDRESS") or ray.is_initialized()):
        return []
    try:
        connect(address)
    except UserError as err:
        return [str(err)]
    nodes = sum(node["Alive"] for node in ray.nodes())
    uri = sweep_uri(sweep)
    if nodes > 1 and urlparse(uri).scheme in ("", "file"):
        return [f"storage: {uri} is a local path and the cluster has {nodes} nodes: trials on other nodes write to "
                "their own disks; use an s3:// or gs:// URI, or a shared file system mounted at this path on every "
                "node"]
    return []


def _gpu_warnings(sweep: Sweep) -> list[str]:
    gpu = sweep.spec.resources.gpu
    if gpu and not torch.cuda.is_available():
        return [f"resources.gpu: {gpu:g} GPU per trial is requested but no GPU is visible here; trials wait for a "
                "GPU node, so set resources.gpu: 0 to run on this machine"]
    return []


def _dataset_warnings(sweep: Sweep) -> list[str]:
    """One line per dataset and ``data_dir`` whose files are missing (the check ``prepare`` makes, no download)."""
    places = dict.fromkeys((c.config.data.dataset, c.config.data.data_dir, c.config.data.download)
                           for c in sweep.cells)
    found = []
    for dataset, data_dir, download in places:
        missing = missing_file(dataset, data_dir)
        if missing is not None:
            then = "trials download it (download: true)" if download else "trials fail: fetch it or set download: true"
            if dataset == FOLDER:  # a user's own images: nothing to download
                then = "trials fail: give it train/ and val/ folders with one subfolder of images per class"
            found.append(f"data_dir: dataset '{dataset}' is missing from {data_dir} (no {missing}); {then}")
    return found


def _override_warnings(sweep: Sweep) -> list[str]:
    """A key set both by a variant and by the grid: the grid's value wins, so the variant's is silently lost."""
    grid = sweep.spec.grid or {}
    variants = sweep.spec.variants or []
    found = []
    for key in grid:
        setters = [f"variants[{i}]" for i, variant in enumerate(variants) if key in variant]
        if setters:
            found.append(f"grid: axis {key!r} overrides {key!r} of {', '.join(setters)}; set it in the variants or "
                         "in the grid, not both")
    return found


def _scheduler_warnings(sweep: Sweep) -> list[str]:
    scheduler = sweep.spec.scheduler
    epochs = min(cell.config.optim.epochs for cell in sweep.cells)
    if scheduler and scheduler.grace_period >= epochs:
        return [f"scheduler.grace_period: {scheduler.grace_period} is not below epochs ({epochs}), so ASHA stops no "
                "trial; lower grace_period or drop the scheduler"]
    return []
