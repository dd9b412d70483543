"""Packed training against separate runs: seed-runs per hour of a preset's P4CNN p4 cell at K = 1, 2, 4, 8 copies.

``--preset quick`` (default): the main job's settings (``sweeps/quick.yaml``: mnist5k, 28x28, batch 8, 2 epochs),
trained with the c4 regime. ``--preset paper_rotmnist``: the paper's (batch 256, 50 epochs, step schedule) on the
embedded mnist5k digits, projected to the preset's MNIST training split (54,000 images) and its seed-runs.

Both sides train through Lightning on the real datamodules (device-resident batches, per-example regime angles,
the optimiser step), ``--steps`` steps each after ``--warmup``; validation, test and equivariance error are left
out (per-run costs that packing neither adds nor saves). K separate runs cost K times one run's step, one after
another on the same cores; with ``--concurrent N`` the separate side is N runs at once in N processes sharing the
device (as ``resources: {gpu: 1/N}`` trials do). A pack of K costs one packed step. Seed-runs per hour = K x 3600
/ (steps of one run x seconds a step). On a CPU the clock is process CPU time (on a shared machine other processes
stretch wall time, not CPU time); on a GPU, wall time between synchronisations, and the pack's peak GPU memory.
Several ``--precision`` values make one table; the projection takes the best row of it.
Run: ``python -m benchmarks.bench_pack`` (a few minutes on a CPU).
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import time
from pathlib import Path

import pytorch_lightning as pl
import torch

from benchmarks.common import device_line, write_table
from equisweep.models.packed import PackedModel
from equisweep.pipeline.sweep.spec import load_sweep
from equisweep.pipeline.train.config import RunConfig
from equisweep.pipeline.train.module import EquivarianceClassifier
from equisweep.pipeline.train.packed_module import PackedClassifier
from equisweep.pipeline.train.packing import PackedDataModule
from equisweep.pipeline.train.run import build_run, classifier_options

SWEEPS = Path(__file__).parents[1] / "sweeps"
PAPER_TRAIN_IMAGES = 54_000  # MNIST's 60,000 training digits less the stratified 10 % that validates


class StepClock(pl.Callback):
    """CPU (or, on a GPU, synchronised wall) seconds per training step after ``warmup`` steps."""

    def __init__(self, warmup: int, device: torch.device) -> None:
        self.warmup, self.device, self.start, self.seconds = warmup, device, 0.0, 0.0

    def _now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return time.perf_counter()
        return time.process_time()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup:
            self.start = self._now()

    def on_train_end(self, trainer, pl_module) -> None:
        self.seconds = (self._now() - self.start) / (trainer.global_step - self.warmup)


def cell(preset: str, device: torch.device, precision: str) -> RunConfig:
    """The preset's first p4 cell at its input size, on the embedded digits, with the c4 regime."""
    sweep = load_sweep(SWEEPS / f"{preset}.yaml")
    first = next(c.config for c in sweep.cells
                 if c.config.model.group == "p4" and c.config.model.subsampling == "stride")
    return RunConfig.from_flat(first.flat() | dict(dataset="mnist5k", train_symmetry="c4", num_workers=0,
                                                   precision=precision,
                                                   accelerator="gpu" if device.type == "cuda" else "cpu"))


def seconds_per_step(configs: list[RunConfig], steps: int, warmup: int, device: torch.device,
                     callbacks: tuple[pl.Callback, ...] = ()) -> float:
    """One training step of the configs packed (several) or of the one run alone (one config); on a GPU,
    ``torch.cuda.max_memory_allocated`` afterwards is the peak of this fit alone."""
    datamodules, nets, _ = zip(*(build_run(c) for c in configs))
    options = classifier_options(configs[0], datamodules[0])
    if len(configs) == 1:
        datamodule, module = datamodules[0], EquivarianceClassifier(nets[0], datamodules[0].num_classes, **options)
    else:
        datamodule = PackedDataModule(datamodules)
        module = PackedClassifier(PackedModel(nets), datamodules[0].num_classes, **options)
    clock = StepClock(warmup, device)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    trainer = pl.Trainer(max_steps=warmup + steps, accelerator=configs[0].hardware.accelerator, devices=1,
                         precision=configs[0].hardware.precision, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                         num_sanity_val_steps=0, callbacks=[clock, *callbacks])
    trainer.fit(module, datamodule=datamodule)
    return clock.seconds


def _one_alone(job: tuple[RunConfig, int, int, str, int]) -> float:
    config, steps, warmup, device, threads = job
    torch.set_num_threads(threads)
    return seconds_per_step([config], steps, warmup, torch.device(device))


def separate_seconds(config: RunConfig, args: argparse.Namespace, device: torch.device) -> float:
    """Seconds per step of one separate run, as the throughput of ``--concurrent`` runs sharing the device."""
    if args.concurrent == 1:
        return seconds_per_step([config], args.steps, args.warmup, device)
    jobs = [(config.model_copy(update={"seed": s}), args.steps, args.warmup, str(device), args.threads)
            for s in range(args.concurrent)]
    with multiprocessing.get_context("spawn").Pool(args.concurrent) as pool:
        return max(pool.map(_one_alone, jobs)) / args.concurrent  # N steps, one of each run, per slowest step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="quick", choices=["quick", "paper_rotmnist"])
    parser.add_argument("--packs", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per process")
    parser.add_argument("--concurrent", type=int, default=1, help="separate runs sharing the device at once")
    parser.add_argument("--precision", nargs="+", default=["32-true"], help="e.g. bf16-mixed 32-true on a GPU")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows = []
    for precision in args.precision:
        config = cell(args.preset, device, precision)
        run_steps = config.optim.epochs * math.ceil(train_images(args.preset, config) / config.data.batch_size)
        alone = separate_seconds(config, args, device)
        for k in args.packs:
            try:
                pack = seconds_per_step([config.model_copy(update={"seed": s}) for s in range(k)], args.steps,
                                        args.warmup, device)
            except torch.cuda.OutOfMemoryError:  # the larger packs may not fit: the row says so, the rest go on
                print(f"K={k} {precision}: out of GPU memory")
                pack = math.inf
            separate_rate, packed_rate = 3600 / (run_steps * alone), k * 3600 / (run_steps * pack)
            rows.append({"precision": config.hardware.precision, "K": k, "separate_ms": 1e3 * alone * k,
                         "packed_ms": 1e3 * pack, "separate_runs_h": separate_rate, "packed_runs_h": packed_rate,
                         "speedup": packed_rate / separate_rate})
            if device.type == "cuda":
                rows[-1]["peak_MiB"] = torch.cuda.max_memory_allocated(device) / 2**20
    clock = "synchronised wall" if device.type == "cuda" else "CPU time"
    header = (f"{device_line(device)} clock={clock} preset={args.preset} batch={config.data.batch_size} "
              f"dataset={config.data.dataset} separate={args.concurrent} at once steps={args.steps} "
              f"run={run_steps} steps")
    widths = {"precision": 10, "K": 3, "separate_ms": 12, "packed_ms": 10, "separate_runs_h": 16,
              "packed_runs_h": 14, "speedup": 8, "peak_MiB": 9}
    print(write_table(f"bench_pack_{args.preset}", header, rows, list(rows[-1]), [widths[c] for c in rows[-1]]))
    best = max(rows, key=lambda row: row["packed_runs_h"])
    single = max(rows, key=lambda row: row["separate_runs_h"])
    runs = load_sweep(SWEEPS / f"{args.preset}.yaml").num_trials
    print(f"{args.preset}.yaml: {runs} seed-runs take {runs / best['packed_runs_h']:.2f} h packed at K={best['K']} "
          f"{best['precision']}, {runs / single['separate_runs_h']:.2f} h as separate runs ({single['precision']}) "
          f"(training steps only)")


def train_images(preset: str, config: RunConfig) -> int:
    """Training images of one epoch: the quick preset's embedded split, or the paper's MNIST split."""
    if preset != "quick":
        return PAPER_TRAIN_IMAGES
    datamodule = build_run(config)[0]
    datamodule.setup("fit")
    return len(datamodule.splits["train"][0])

if __name__ == "__main__":
    main()
