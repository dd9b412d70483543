"""Sweep overhead: one trial of ``sweeps/quick.yaml`` (its first p4 cell) run by Ray Tune against the same
``run_one`` call in a plain process, and the trials per hour of the whole preset on this machine.

Both sides use one thread: a Tune trial with ``resources: {cpu: 1}`` gets ``OMP_NUM_THREADS=1``, so the
in-process baseline runs in a fresh Python with ``OMP_NUM_THREADS=1`` and ``torch.set_num_threads(1)``.

- first trial: from calling ``run_sweep`` (Ray already up) to the driver seeing trial 1 complete, so it includes
  the worker process start and its imports; against a fresh process's imports plus its first ``run_one``.
- steady state: ``--trials`` identical-config trials (a grid over ``seed``, ``max_concurrent: 1``,
  ``reuse_actors``), each timed as the interval between two trial completions in the driver (the gap between
  trials included); against the median of the later ``run_one`` calls in the warm process.
  Target: under 1.10x.
- quick.yaml: the whole preset through ``run_sweep`` on a fresh embedded Ray with all CPUs, Ray start included;
  trials per hour = 3600 x trials / wall.

Everything is written under a temporary directory (W&B disabled). Run: ``python -m benchmarks.bench_sweep``
(about 8 minutes on an idle 2-core machine; ``--quick`` skips the full preset and takes about 3).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUICK = ROOT / "sweeps" / "quick.yaml"


def _isolate_environment(tmp: Path) -> None:
    """Ray on loopback without usage stats or cloud probing (a HOME holding a local bootstrap config), no W&B."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ["WANDB_MODE"] = "disabled"
    if not (Path.home() / "ray_bootstrap_config.yaml").is_file():
        home = tmp / "home"
        home.mkdir(exist_ok=True)
        (home / "ray_bootstrap_config.yaml").write_text("provider: {type: local}\n")
        os.environ["HOME"] = str(home)


def _stat(pid: int) -> tuple[str, int, float] | None:
    """(name, parent pid, user + system CPU seconds so far) of process ``pid`` (Linux), None if unreadable."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name, fields = text[text.index("(") + 1:text.rindex(")")], text[text.rindex(")") + 2:].split()
    return name, int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int | None) -> float | None:
    stat = _stat(pid) if pid else None
    return stat[2] if stat else None


def _tree_cpu() -> dict[int, tuple[str, float]]:
    """CPU seconds so far of this process and all its descendants (Ray's daemons and workers), by pid."""
    stats = {int(p.name): _stat(int(p.name)) for p in Path("/proc").iterdir() if p.name.isdigit()}
    stats = {pid: stat for pid, stat in stats.items() if stat}
    children: dict[int, list[int]] = {}
    for pid, (_, parent, _) in stats.items():
        children.setdefault(parent, []).append(pid)
    tree, todo = {}, [os.getpid()]
    while todo:
        pid = todo.pop()
        if pid in stats:
            tree[pid] = (stats[pid][0], stats[pid][2])
            todo.extend(children.get(pid, []))
    return tree


# -- the in-process baseline, in a child process -------------------------------------------------------------------

def _inprocess_child(config_file: str, runs: int, out_file: str) -> None:
    start = time.perf_counter()
    import torch

    from equisweep.pipeline.train.config import RunConfig
    from equisweep.pipeline.train.run import run_one

    torch.set_num_threads(1)
    config = RunConfig.model_validate_json(Path(config_file).read_text())
    imports = time.perf_counter() - start
    records = []
    for i in range(runs):
        out_dir = Path(out_file).parent / f"inprocess-{i}"
        begin, cpu = time.perf_counter(), time.process_time()
        results = run_one(config, out_dir, enable_progress_bar=False)
        records.append({"wall_s": time.perf_counter() - begin, "cpu_s": time.process_time() - cpu,
                        "train_s": results["train_seconds"], "val_acc": results["val_acc"]})
    Path(out_file).write_text(json.dumps({"imports_s": imports, "threads": torch.get_num_threads(),
                                          "runs": records}))


def _inprocess(config, runs: int, tmp: Path) -> dict:
    (tmp / "inprocess").mkdir()
    config_file, out_file, log_file = (tmp / "inprocess" / name for name in ("config.json", "out.json", "log.txt"))
    config_file.write_text(config.model_dump_json())
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    begin = time.perf_counter()
    with log_file.open("w") as log:
        code = subprocess.call([sys.executable, "-m", "benchmarks.bench_sweep", "--_inprocess", str(config_file),
                                str(runs), str(out_file)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    if code != 0:
        sys.exit(f"bench_sweep: the in-process baseline failed (exit {code}); see {log_file}")
    return {**json.loads(out_file.read_text()), "process_s": time.perf_counter() - begin}


# -- sweeps under Tune ---------------------------------------------------------------------------------------------

def _timed_run_sweep(sweep) -> dict:
    """``run_sweep(sweep)`` as the CLI runs it (but with Tune's progress output off), plus a driver-side callback
    that clocks every trial and a clock on the results-table rewrites."""
    from ray import tune

    from equisweep.pipeline.sweep import driver as sweep_mod

    class Clock(tune.Callback):
        def __init__(self) -> None:
            self.start: dict[str, float] = {}
            self.complete: dict[str, float] = {}
            self.results: dict[str, list] = {}
            self.last: dict[str, dict] = {}
            self.cpu: dict[str, list] = {}  # worker CPU seconds at trial start and end, when the worker is known
            self.pid: int | None = None  # the last worker seen (max_concurrent 1 with reuse_actors: the same one)
            self.tree_end: dict[int, tuple[str, float]] = {}

        def on_trial_start(self, iteration, trials, trial, **info) -> None:
            self.start[trial.trial_id] = time.perf_counter()
            self.cpu[trial.trial_id] = [self.pid, _cpu_seconds(self.pid)]

        def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
            self.pid = result.get("pid")
            self.results.setdefault(trial.trial_id, []).append((time.perf_counter(), _cpu_seconds(self.pid)))

        def on_trial_complete(self, iteration, trials, trial, **info) -> None:
            self.complete[trial.trial_id] = time.perf_counter()
            self.last[trial.trial_id] = dict(trial.last_result or {})
            self.cpu[trial.trial_id].append(_cpu_seconds(self.last[trial.trial_id].get("pid")))

        def on_experiment_end(self, trials, **info) -> None:
            self.tree_end = _tree_cpu()

    clock = Clock()
    tree_begin = _tree_cpu()
    begin, driver_cpu = time.perf_counter(), time.process_time()
    outcome = sweep_mod.run_sweep(sweep, verbose=0, callbacks=[clock])
    end, driver_cpu = time.perf_counter(), time.process_time() - driver_cpu
    order = sorted(clock.complete, key=clock.complete.get)
    trials = []
    for trial_id in order:
        result, reports = clock.last[trial_id], clock.results.get(trial_id, [])
        (t0, c0), (t1, c1) = reports[0], reports[-1]
        pid, cpu_start, cpu_end = clock.cpu[trial_id]
        same_worker = pid == result.get("pid") and None not in (cpu_start, cpu_end)
        trials.append({
            "pid": result.get("pid"), "cpu_s": cpu_end - cpu_start if same_worker else None,
            "trial_id": trial_id, "start": clock.start[trial_id] - begin, "complete": clock.complete[trial_id] - begin,
            "span_s": clock.complete[trial_id] - clock.start[trial_id], "time_total_s": result.get("time_total_s"),
            "train_s": result.get("train_seconds"), "val_acc": result.get("val_acc"), "reports": len(reports),
            # worker CPU use between its first and last report: ~1.0 for one busy thread
            "worker_cores": (c1 - c0) / (t1 - t0) if None not in (c0, c1) and t1 > t0 else None})
    # CPU used during the sweep by the driver, the trial workers and everything else Ray runs (its daemons, idle
    # workers it prestarts); processes that ended before the sweep did are missing
    workers = {t["pid"] for t in trials}
    used = {pid: (name, cpu - tree_begin.get(pid, (name, 0.0))[1]) for pid, (name, cpu) in clock.tree_end.items()
            if pid != os.getpid()}
    background: dict[str, float] = {}
    for pid, (name, cpu) in used.items():
        if pid not in workers:
            background[name] = background.get(name, 0.0) + cpu
    return {"wall_s": end - begin, "trials": trials, "counts": outcome.counts, "path": outcome.path,
            "driver_cpu_s": driver_cpu,
            "worker_cpu_s": sum(cpu for pid, (_, cpu) in used.items() if pid in workers),
            "background_cpu_s": dict(sorted(background.items(), key=lambda item: -item[1]))}


def _storage_summary(path: str) -> dict:
    files = [p for p in Path(path).rglob("*") if p.is_file()]
    return {"files": len(files), "mbytes": sum(p.stat().st_size for p in files) / 2**20,
            "checkpoint_dirs": sum(1 for p in Path(path).rglob("checkpoint_*") if p.is_dir())}


def _steady_spec(quick: dict, cell, trials: int, storage: Path) -> dict:
    variant = {key: value for key, value in cell.overrides.items() if key != "seed"}
    spec = {key: value for key, value in quick.items() if key not in ("variants", "grid", "name", "storage")}
    return {**spec, "name": "bench_steady", "variants": [variant], "grid": {"seed": list(range(trials))},
            "max_concurrent": 1, "resources": {"cpu": 1}, "storage": str(storage), "wandb": {"mode": "disabled"}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=3, help="identical-config trials for the steady state (>= 2)")
    parser.add_argument("--runs", type=int, default=2, help="run_one calls in the in-process baseline (>= 2)")
    parser.add_argument("--skip-full", action="store_true", help="do not run the whole quick.yaml")
    parser.add_argument("--quick", action="store_true", help="--trials 2 --runs 2 --skip-full")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory and print its path")
    parser.add_argument("--_inprocess", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._inprocess:
        _inprocess_child(args._inprocess[0], int(args._inprocess[1]), args._inprocess[2])
        return
    if args.quick:
        args.trials, args.runs, args.skip_full = 2, 2, True
    if args.trials < 2 or args.runs < 2:
        parser.error("--trials and --runs must be at least 2 (the first is the cold one)")

    bench_start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="bench_sweep-"))
    _isolate_environment(tmp)
    import ray
    import torch
    import yaml

    from benchmarks.common import RESULTS, write_table
    from equisweep.pipeline.sweep.driver import connect
    from equisweep.pipeline.sweep.spec import load_sweep

    load = {"start": os.getloadavg()[0]}
    try:
        quick_data = yaml.safe_load(QUICK.read_text())
        quick = load_sweep(QUICK, {"storage": str(tmp / "quick"), "wandb": {"mode": "disabled"}})
        cell = next(c for c in quick.cells if c.config.model.group == "p4")
        print(f"cell: {cell.overrides} epochs={cell.config.optim.epochs} batch={cell.config.data.batch_size}",
              flush=True)

        print(f"in-process baseline: {args.runs} run_one calls, 1 thread ...", flush=True)
        inproc = _inprocess(cell.config, args.runs, tmp)
        load["inprocess"] = os.getloadavg()[0]

        print(f"Tune: {args.trials} identical trials, max_concurrent 1, reuse_actors ...", flush=True)
        steady_file = tmp / "steady.yaml"
        steady_file.write_text(yaml.safe_dump(_steady_spec(quick_data, cell, args.trials, tmp / "steady")))
        steady_sweep = load_sweep(steady_file)
        begin = time.perf_counter()
        connect(None)
        ray_start = time.perf_counter() - begin
        steady = _timed_run_sweep(steady_sweep)
        ray.shutdown()
        load["steady"] = os.getloadavg()[0]
        storage = _storage_summary(steady["path"])

        full = None
        if not args.skip_full:
            print(f"Tune: the whole {QUICK.name} ({quick.num_trials} trials) on a fresh Ray ...", flush=True)
            begin = time.perf_counter()
            connect(None)
            full_ray = time.perf_counter() - begin
            cpus = int(ray.cluster_resources().get("CPU", 0))
            full = _timed_run_sweep(quick)
            ray.shutdown()
            full_wall = time.perf_counter() - begin
            load["full"] = os.getloadavg()[0]
            busy = sum(t["span_s"] for t in full["trials"])
            full.update(ray_start_s=full_ray, wall_incl_ray_s=full_wall, cpus=cpus,
                        trials_per_hour=3600 * quick.num_trials / full_wall,
                        slot_use=busy / (full_wall * max(1, cpus // int(quick.spec.resources.cpu))))
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    runs, trials = inproc["runs"], steady["trials"]
    cold_wall = inproc["imports_s"] + runs[0]["wall_s"]
    warm_wall = statistics.median(run["wall_s"] for run in runs[1:])
    warm_cpu = statistics.median(run["cpu_s"] for run in runs[1:])
    warm_train = statistics.median(run["train_s"] for run in runs[1:])
    first = trials[0]["complete"]
    intervals = [b["complete"] - a["complete"] for a, b in itertools.pairwise(trials)]
    gaps = [b["start"] - a["complete"] for a, b in itertools.pairwise(trials)]
    steady_wall = statistics.median(intervals)
    span = statistics.median(t["span_s"] for t in trials[1:])
    cpus = [t["cpu_s"] for t in trials[1:] if t["cpu_s"] is not None]
    steady_cpu = statistics.median(cpus) if cpus else float("nan")
    tune_train = statistics.median(t["train_s"] for t in trials[1:])

    def row(case, wall, cpu=None, ratio=None, cpu_ratio=None, per_hour=None):
        return {"case": case, "wall_s": wall, "cpu_s": "-" if cpu is None else cpu,
                "tune/inproc": "-" if ratio is None else ratio, "cpu_ratio": "-" if cpu_ratio is None else cpu_ratio,
                "trials_per_h": "-" if per_hour is None else per_hour}

    rows = [
        row("in-process imports", inproc["imports_s"]),
        row("in-process run_one, first", runs[0]["wall_s"], runs[0]["cpu_s"]),
        row("in-process run_one, warm", warm_wall, warm_cpu, per_hour=3600 / warm_wall),
        row("  of which fit (train_seconds)", warm_train),
        row("ray start (embedded, 127.0.0.1)", ray_start),
        row("tune trial 1 (worker start+imports)", first, ratio=first / cold_wall),
        row("  of which before trial start", trials[0]["start"]),
        row("tune trial, steady (interval)", steady_wall, steady_cpu, steady_wall / warm_wall, steady_cpu / warm_cpu,
            3600 / steady_wall),
        row("  of which trial span", span, ratio=span / warm_wall),
        row("  of which fit (train_seconds)", tune_train, ratio=tune_train / warm_train),
        row("  gap between trials", statistics.median(gaps)),
    ]
    if full is not None:
        rows.append(row(f"{QUICK.name} {quick.num_trials} trials, {full['cpus']} CPUs", full["wall_incl_ray_s"],
                        per_hour=full["trials_per_hour"]))
    runtime = time.perf_counter() - bench_start
    header = (f"cpu cores={os.cpu_count()} threads/trial=1 (inproc {inproc['threads']}) torch={torch.__version__}"
              f" ray={ray.__version__} cell={json.dumps(cell.overrides, separators=(',', ':'))}"
              f" epochs={cell.config.optim.epochs} trials={args.trials} runs={args.runs}"
              f" load1={'/'.join(f'{v:.1f}' for v in load.values())}"
              " (first vs imports+first run_one; steady vs warm run_one; cpu: the trial's worker process)")
    columns = ["case", "wall_s", "cpu_s", "tune/inproc", "cpu_ratio", "trials_per_h"]
    print(write_table("bench_sweep", header, rows, columns, [36, 8, 8, 11, 9, 12]))
    details = {"inprocess": inproc, "steady": {**steady, "ray_start_s": ray_start, "intervals_s": intervals,
                                               "gaps_s": gaps, "storage": storage},
               "full": full, "loadavg_1min": load, "benchmark_runtime_s": runtime}
    report = json.loads((RESULTS / "bench_sweep.json").read_text())
    (RESULTS / "bench_sweep.json").write_text(json.dumps({**report, "details": details}, indent=1))
    worker = [t["worker_cores"] for t in trials if t["worker_cores"] is not None]
    background = ", ".join(f"{name} {cpu:.1f}" for name, cpu in list(steady["background_cpu_s"].items())[:5])
    print(f"steady intervals: {', '.join(f'{s:.1f}' for s in intervals)} s; trial worker busy cores: "
          f"{', '.join(f'{c:.2f}' for c in worker)}; storage: {storage['files']} files, {storage['mbytes']:.1f} MiB, "
          f"{storage['checkpoint_dirs']} Tune checkpoints")
    print(f"CPU s during the {steady['wall_s']:.0f} s steady sweep: worker {steady['worker_cpu_s']:.1f}, driver "
          f"{steady['driver_cpu_s']:.1f}, rest of Ray {sum(steady['background_cpu_s'].values()):.1f} ({background})")
    if full is not None:
        print(f"{QUICK.name}: {full['counts']} in {full['wall_incl_ray_s']:.0f} s incl. Ray start "
              f"{full['ray_start_s']:.1f} s; trial slots busy {100 * full['slot_use']:.0f}% of the wall time; "
              f"CPU s besides the trials: driver {full['driver_cpu_s']:.0f}, rest of Ray "
              f"{sum(full['background_cpu_s'].values()):.0f}")
    # this benchmark alone keeps the load near 1 while it compares (one busy process at a time)
    compared = max(load["inprocess"], load["steady"])
    if compared > (os.cpu_count() or 1) or min(worker, default=1.0) < 0.9:
        print(f"warning: other processes competed for the CPU (1-minute load {compared:.1f} on {os.cpu_count()} cores, "
              f"trial worker busy {min(worker, default=1.0):.2f} cores); both wall and CPU seconds stretch under "
              "contention, unevenly between the phases, so rerun these ratios on an idle machine")
    print(f"benchmark runtime {runtime:.0f} s")


if __name__ == "__main__":
    main()
