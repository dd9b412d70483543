"""Where a packed training step's time goes, and what ``torch.compile`` and CUDA graphs save at small K.

Profile: a pack of ``--pack`` copies of a preset's P4CNN p4 cell (``bench_pack``'s cell, trained through Lightning
the same way) runs ``--steps`` steps under ``torch.profiler`` after ``--warmup``. The table gives the time per step
(synchronised wall on a GPU, process CPU time on a CPU), on a GPU the device's busy time per step (its kernels and
copies added up) and kernel launches per step, and the ops with the most self time. A device busy for much less
than the step's wall time is waiting on the host: the step is bound by launches and Python, not arithmetic.

Compile: the same pack's step outside Lightning (forward, cross-entropy, backward, Adam) on random images of the
cell's shape, eager against ``torch.compile`` of forward and loss (mode ``default``; on a GPU also
``reduce-overhead``, which replays CUDA graphs), at each of ``--compile-packs``; a mode that fails says why in its
row. Run: ``python -m benchmarks.profile_pack --device cuda``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import pytorch_lightning as pl
import torch
from torch.autograd import DeviceType
from torch.nn import functional as F
from torch.profiler import ProfilerActivity, profile

from benchmarks.bench_pack import cell, seconds_per_step
from benchmarks.common import device_line, median_ms, write_table
from equisweep.models.packed import PackedModel
from equisweep.pipeline.train.config import RunConfig
from equisweep.pipeline.train.run import build_run

TOP_OPS = 12


class ProfileSteps(pl.Callback):
    """``torch.profiler`` over every training step after ``warmup``."""

    def __init__(self, warmup: int, device: torch.device) -> None:
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        self.warmup, self.profiler = warmup, profile(activities=activities)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup:
            self.profiler.__enter__()

    def on_train_end(self, trainer, pl_module) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        self.profiler.__exit__(None, None, None)


def _self_device_us(event) -> float:
    return getattr(event, "self_device_time_total", 0.0)


def profile_table(config: RunConfig, args: argparse.Namespace, device: torch.device) -> str:
    configs = [config.model_copy(update={"seed": s}) for s in range(args.pack)]
    profiler = ProfileSteps(args.warmup, device)
    step_s = seconds_per_step(configs, args.steps, args.warmup, device, callbacks=(profiler,))
    gpu = device.type == "cuda"
    averages = profiler.profiler.key_averages()
    device_events = [e for e in profiler.profiler.events() if e.device_type == DeviceType.CUDA]
    busy_ms = sum(e.time_range.elapsed_us() for e in device_events) / 1e3 / args.steps
    step_ms = 1e3 * step_s
    ops = [e for e in averages if e.device_type == DeviceType.CPU]
    key = _self_device_us if gpu else (lambda e: e.self_cpu_time_total)
    total = sum(key(e) for e in ops) or 1.0
    rows = [{"op": e.key[:48], "calls/step": e.count / args.steps, "self_ms/step": key(e) / 1e3 / args.steps,
             "share_%": 100 * key(e) / total} for e in sorted(ops, key=key, reverse=True)]
    summary = (f"step {step_ms:.2f} ms ({'synchronised wall' if gpu else 'CPU time'}, profiler on); ops by self "
               f"{'device' if gpu else 'CPU'} time, share_% of all ops")
    if gpu:
        summary += (f"; device busy {busy_ms:.2f} ms/step ({100 * busy_ms / step_ms:.0f} % of the step), "
                    f"{len(device_events) / args.steps:.0f} kernels and copies per step: the rest is the host "
                    f"(launches, Python, Lightning)")
    header = (f"{device_line(device)} preset={args.preset} K={args.pack} batch={config.data.batch_size} "
              f"precision={config.hardware.precision} steps={args.steps}\n{summary}")
    return write_table(f"profile_pack_{args.preset}", header, rows[:TOP_OPS], list(rows[0]), [48, 10, 12, 8])


def packed_step(config: RunConfig, k: int, device: torch.device, mode: str | None) -> tuple[Callable[[], None], float]:
    """One step of a pack of ``k`` copies on random images, compiled with ``mode`` (None: eager); and the seconds
    its first call took (compilation included)."""
    nets = [build_run(config.model_copy(update={"seed": s}))[1] for s in range(k)]
    model = PackedModel(nets).to(device)
    size = config.data.input_size
    x = torch.randn(k, config.data.batch_size, 1, size, size, device=device)
    y = torch.randint(0, 10, (k, config.data.batch_size), device=device)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.optim.lr)
    dtype = torch.bfloat16 if config.hardware.precision.startswith("bf16") else None

    def loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            logits = model(x)
        return F.cross_entropy(logits.flatten(0, 1).float(), y.flatten())

    forward = loss if mode is None else torch.compile(loss, mode=mode)

    def step() -> None:
        optimiser.zero_grad(set_to_none=True)
        forward(x, y).backward()
        optimiser.step()

    start = time.perf_counter()
    step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return step, time.perf_counter() - start


def compile_table(config: RunConfig, args: argparse.Namespace, device: torch.device) -> str:
    modes = ["default", "reduce-overhead"] if device.type == "cuda" else ["default"]
    rows = []
    for k in args.compile_packs:
        eager_step, _ = packed_step(config, k, device, None)
        eager_ms = median_ms(eager_step, device, args.repeats)
        for mode in modes:
            row = {"K": k, "mode": mode, "eager_ms": eager_ms}
            try:
                step, first_s = packed_step(config, k, device, mode)
                compiled_ms = median_ms(step, device, args.repeats, warmup=3)
            except Exception as error:  # a mode this torch cannot compile: the table says so and goes on
                rows.append(row | {"compiled_ms": float("nan"), "compiled/eager": float("nan"), "compile_s": 0.0,
                                   "note": f"failed: {type(error).__name__}: {str(error).splitlines()[0][:60]}"})
                continue
            rows.append(row | {"compiled_ms": compiled_ms, "compiled/eager": compiled_ms / eager_ms,
                               "compile_s": first_s, "note": "ok"})
    header = (f"{device_line(device)} preset={args.preset} batch={config.data.batch_size} "
              f"precision={config.hardware.precision} "
              f"packed step outside Lightning (forward, loss, backward, Adam); ms: median of {args.repeats}")
    return write_table(f"compile_pack_{args.preset}", header, rows, list(rows[0]), [3, 15, 9, 11, 14, 9, 10])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="paper_rotmnist", choices=["quick", "paper_rotmnist"])
    parser.add_argument("--pack", type=int, default=16, help="copies in the profiled pack; 0: no profile")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--precision", default="32-true", help="e.g. bf16-mixed on a GPU")
    parser.add_argument("--compile-packs", type=int, nargs="*", default=[1, 4],
                        help="pack sizes for the compile ratio; none: skip it")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    config = cell(args.preset, device, args.precision)
    if args.pack:
        print(profile_table(config, args, device))
    if args.compile_packs:
        print(compile_table(config, args, device))


if __name__ == "__main__":
    main()
