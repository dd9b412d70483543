"""Shared timing and table writing for the benchmarks: warm up, synchronise, take the median."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

# The committed tables; BENCH_RESULTS_DIR sends a run's tables elsewhere (the GPU check writes into its own folder).
RESULTS = Path(os.environ.get("BENCH_RESULTS_DIR") or Path(__file__).parent / "results")


def timing_parser(doc: str | None, batch: int, repeats: int) -> argparse.ArgumentParser:
    """The options every same-run ratio benchmark takes: batch, repeats, CPU threads, device."""
    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument("--batch", type=int, default=batch)
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return parser


def prepare(args: argparse.Namespace) -> tuple[torch.device, str]:
    """Threads and seed as asked; the device and the clock ``elapsed_ms`` reads on it."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    return device, "wall" if device.type == "cuda" else "cpu-time"


def device_line(device: torch.device) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return f"device={name} threads={torch.get_num_threads()} torch={torch.__version__}"


def median_ms(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 2) -> float:
    """Median wall time of ``fn`` in milliseconds, synchronising the GPU before every clock read."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def elapsed_ms(fn: Callable[[], object], device: torch.device) -> float:
    """One call of ``fn`` in milliseconds: process CPU time on the CPU (wall time on a shared, loaded machine is
    noise), wall time between synchronisations on a GPU."""
    if device.type != "cuda":
        start = time.process_time()
        fn()
        return (time.process_time() - start) * 1e3
    torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    torch.cuda.synchronize(device)
    return (time.perf_counter() - start) * 1e3


def fwd_bwd(module: torch.nn.Module, x: torch.Tensor) -> Callable[[], None]:
    """One forward and backward pass of ``module`` on ``x``, as a callable to time."""
    def run() -> None:
        module.zero_grad(set_to_none=True)
        module(x).sum().backward()
    return run


def interleaved_rounds(passes: dict[str, Callable[[], object]], device: torch.device, repeats: int,
                       warmup: int = 1) -> list[dict[str, float]]:
    """``repeats`` rounds of one timed call of each pass in turn (after ``warmup`` rounds), so that a change in the
    machine's load hits baseline and candidate alike: take the median of within-round ratios."""
    rounds = [{name: elapsed_ms(fn, device) for name, fn in passes.items()} for _ in range(warmup + repeats)]
    return rounds[warmup:]


def write_table(name: str, header: str, rows: list[dict], columns: list[str], widths: list[int]) -> str:
    """Print a fixed-width table and write it as ``results/<name>.md`` and ``results/<name>.json``."""
    lines = [header, "  ".join(f"{c:>{w}}" if i else f"{c:<{w}}" for i, (c, w) in enumerate(zip(columns, widths)))]
    for row in rows:
        cells = [f"{row[c]:.2f}" if isinstance(row[c], float) else str(row[c]) for c in columns]
        lines.append("  ".join(f"{v:>{w}}" if i else f"{v:<{w}}" for i, (v, w) in enumerate(zip(cells, widths))))
    text = "\n".join(lines)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.md").write_text("```\n" + text + "\n```\n")
    (RESULTS / f"{name}.json").write_text(json.dumps({"header": header, "rows": rows}, indent=1))
    return text
