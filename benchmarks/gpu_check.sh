#!/usr/bin/env bash
# GPU check, one short script (under 8 minutes on one H100/H200 with 16 CPUs, no internet needed):
#   1. nvidia-smi and torch's view of the GPU,
#   2. the group-conv benchmark (benchmarks/bench_gconv.py) on the GPU, at its default and at a larger size,
#   3. a fractional-GPU sweep: 4 trials sharing one GPU (cpu 2, gpu 0.25 each; bf16-mixed and 32-true x
#      channels_last on and off; deterministic false), p4cnn p4 on mnist5k for 1 epoch, with per-trial wall time,
#      accuracy, GPU memory, and whether all 4 ran at once (from the trials' results and nvidia-smi samples),
#   4. packed training (benchmarks/bench_pack.py) at the paper's rotated-MNIST settings (P4CNN, batch 256):
#      seed-runs per GPU-hour of 4 separate runs sharing the GPU against packs of K = 16, 32, 64, in bf16-mixed
#      and 32-true, and the projected hours of paper_rotmnist.yaml.
#
# Run from the repo root:   bash benchmarks/gpu_check.sh
# Everything printed is meant to be pasted into a note. The committed CPU tables in benchmarks/results/ are left
# as they were; the GPU tables, logs and results.parquet go to a temporary folder (and to $GPU_CHECK_OUT if set).
#
# CPU dry run of the same path (no GPU): GPU_CHECK_ACCELERATOR=cpu bash benchmarks/gpu_check.sh
#   (gpu 0, CPUs per trial = cores / 4, the GPU benchmark runs on the CPU at its small size).
# Other overrides: GPU_CHECK_CPUS_PER_TRIAL, GPU_CHECK_GPU_FRACTION, GPU_CHECK_OUT (a folder for the artefacts).
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
ROOT=$(pwd)
PY=$ROOT/.venv/bin/python
ACCELERATOR=${GPU_CHECK_ACCELERATOR:-gpu}
CORES=$(nproc)

if [ "$ACCELERATOR" = gpu ]; then
  DEVICE=cuda
  GPU_FRACTION=${GPU_CHECK_GPU_FRACTION:-0.25}
  CPUS_PER_TRIAL=${GPU_CHECK_CPUS_PER_TRIAL:-2}
else
  DEVICE=cpu
  GPU_FRACTION=${GPU_CHECK_GPU_FRACTION:-0}
  CPUS_PER_TRIAL=${GPU_CHECK_CPUS_PER_TRIAL:-$(awk -v c="$CORES" 'BEGIN { printf "%g", c / 4 }')}
fi

section() { printf '\n== %s ==\n' "$*"; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
START=$(now)

# -- the venv: use the project's; create it only if missing (needs a package index, which the GPU box may lack) --
if [ ! -x "$PY" ]; then
  echo "gpu_check: no .venv/bin/python in $ROOT."
  echo "gpu_check: trying: python3 -m venv .venv && .venv/bin/pip install -c requirements/lock.txt -e ."
  if ! { python3 -m venv .venv && .venv/bin/pip install -q --retries 1 --timeout 15 \
           -c requirements/lock.txt -e .; }; then
    echo "gpu_check: could not create the venv (no internet?). Copy or build .venv on a machine with a package" \
         "index (same Python and CUDA wheels), place it at $ROOT/.venv, and rerun." >&2
    exit 1
  fi
fi

# -- a private HOME (Ray reads ray_bootstrap_config.yaml there and then probes no cloud metadata), Ray on loopback --
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")
mkdir -p "$WORK/home" "$WORK/results"
printf 'provider: {type: local}\n' > "$WORK/home/ray_bootstrap_config.yaml"
export HOME=$WORK/home
export RAY_USAGE_STATS_ENABLED=0 WANDB_MODE=disabled PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
unset RAY_ADDRESS  # the sweep starts its own embedded Ray on 127.0.0.1

SAMPLER=""
RESULTS_DIR=$ROOT/benchmarks/results
cleanup() {
  [ -n "$SAMPLER" ] && kill "$SAMPLER" 2>/dev/null
  # put back the committed CPU tables that bench_gconv overwrote
  for f in bench_gconv.md bench_gconv.json bench_pack_paper_rotmnist.md bench_pack_paper_rotmnist.json \
           bench_pack_quick.md bench_pack_quick.json; do
    [ -f "$WORK/saved/$f" ] && cp "$WORK/saved/$f" "$RESULTS_DIR/$f"
  done
  if [ -n "${GPU_CHECK_OUT:-}" ]; then
    mkdir -p "$GPU_CHECK_OUT" && cp -r "$WORK/results/." "$GPU_CHECK_OUT/" 2>/dev/null
  fi
}
trap cleanup EXIT

echo "gpu_check: $(date -u +%Y-%m-%dT%H:%M:%SZ) host=$(hostname) cores=$CORES accelerator=$ACCELERATOR work=$WORK"

# -- 1. the GPU ------------------------------------------------------------------------------------------------
section "nvidia-smi"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=index,name,driver_version,memory.total,memory.used,utilization.gpu,temperature.gpu,power.draw,power.limit,clocks.max.sm,compute_mode,mig.mode.current \
    --format=csv 2>&1
  nvidia-smi 2>&1 | sed -n 's/.*CUDA Version: *\([0-9.]*\).*/driver CUDA version: \1/p'
else
  echo "nvidia-smi: not found"
  [ "$ACCELERATOR" = gpu ] && echo "gpu_check: no NVIDIA driver tools on this machine" >&2
fi

"$PY" - <<'EOF'
import torch
line = f"torch {torch.__version__} cuda {torch.version.cuda} cudnn {torch.backends.cudnn.version()}"
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    line += (f" | cuda:0 {p.name} sm_{p.major}{p.minor} {p.total_memory / 2**30:.0f} GiB"
             f" {p.multi_processor_count} SMs bf16={torch.cuda.is_bf16_supported()} devices={torch.cuda.device_count()}")
else:
    line += " | torch.cuda.is_available() = False"
print(line)
EOF
if [ "$ACCELERATOR" = gpu ] && ! "$PY" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
  echo "gpu_check: torch sees no CUDA GPU; stopping (GPU_CHECK_ACCELERATOR=cpu runs the CPU path)" >&2
  exit 1
fi

# -- 2. group conv on the GPU ---------------------------------------------------------------------------------
mkdir -p "$WORK/saved"
for f in bench_gconv.md bench_gconv.json bench_pack_paper_rotmnist.md bench_pack_paper_rotmnist.json \
         bench_pack_quick.md bench_pack_quick.json; do
  [ -f "$RESULTS_DIR/$f" ] && cp "$RESULTS_DIR/$f" "$WORK/saved/$f"
done
gconv() {  # $1: label, rest: bench_gconv arguments
  local label=$1; shift
  section "bench_gconv on $DEVICE, $label (ms, median; ratios < 1 mean ours is faster)"
  if timeout 90 "$PY" -m benchmarks.bench_gconv --device "$DEVICE" "$@" > "$WORK/results/gconv_$label.txt" 2>&1; then
    cat "$WORK/results/gconv_$label.txt"
  else
    echo "bench_gconv failed or timed out (exit $?); its last lines:"; tail -n 15 "$WORK/results/gconv_$label.txt"
  fi
}
if [ "$DEVICE" = cuda ]; then
  gconv default --repeats 20
  gconv large --batch 256 --channels 32 --sizes 32 64 --repeats 20
else
  gconv small --sizes 28 --repeats 3  # the CPU path only: its full table is `make bench`
fi

# -- 3. four trials sharing one GPU ---------------------------------------------------------------------------
SPEC=$WORK/gpu_check.yaml
cat > "$SPEC" <<EOF
# 4 trials on one GPU: quick.yaml's p4 cell (batch 8, no dropout), 1 epoch, each precision x memory format
name: gpu_check
dataset: mnist5k
model: p4cnn
group: p4
input_size: 28
epochs: 1
batch_size: 8
lr: 0.003
dropout: 0.0
schedule: none
angles: [0, 45, 90, 135, 180, 225, 270, 315]
eq_error_samples: 32
accelerator: $ACCELERATOR
deterministic: false
variants:
  - {precision: bf16-mixed, channels_last: true}
  - {precision: 32-true, channels_last: true}
  - {precision: bf16-mixed, channels_last: false}
  - {precision: 32-true, channels_last: false}
resources: {cpu: $CPUS_PER_TRIAL, gpu: $GPU_FRACTION}
max_failures: 0
storage: $WORK/storage
wandb: {mode: disabled}
EOF
section "sweep: 4 trials, cpu $CPUS_PER_TRIAL + gpu $GPU_FRACTION each, accelerator $ACCELERATOR"
sed -n '/^name/,$p' "$SPEC" | tr '\n' ';' | sed 's/;/; /g'; echo

if command -v nvidia-smi >/dev/null && [ "$ACCELERATOR" = gpu ]; then
  (while :; do
     t=$(date +%s.%N)
     nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits 2>/dev/null | sed "s/^/$t, app, /"
     nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader,nounits 2>/dev/null | sed "s/^/$t, gpu, /"
     sleep 1
   done) > "$WORK/results/smi_samples.csv" &
  SAMPLER=$!
fi
SWEEP_START=$(now)
timeout 240 "$ROOT/.venv/bin/equisweep" sweep "$SPEC" > "$WORK/results/sweep_stdout.txt" 2> "$WORK/results/sweep_log.txt"
SWEEP_RC=$?
SWEEP_END=$(now)
[ -n "$SAMPLER" ] && kill "$SAMPLER" 2>/dev/null && wait "$SAMPLER" 2>/dev/null
SAMPLER=""
echo "equisweep sweep: exit $SWEEP_RC, wall $(elapsed "$SWEEP_START" "$SWEEP_END") s (Ray start and worker start included)"
cat "$WORK/results/sweep_stdout.txt"
if [ "$SWEEP_RC" -ne 0 ]; then
  echo "sweep log, last lines:"; grep -v -i warn "$WORK/results/sweep_log.txt" | tail -n 25
fi
cp "$WORK/storage/gpu_check/results.parquet" "$WORK/results/" 2>/dev/null

SWEEP_DIR=$WORK/storage/gpu_check SMI=$WORK/results/smi_samples.csv SWEEP_START=$SWEEP_START "$PY" - <<'EOF'
import json
import os
from pathlib import Path

import pandas as pd

sweep = Path(os.environ["SWEEP_DIR"])
origin = float(os.environ["SWEEP_START"])
if not (sweep / "results.parquet").is_file():
    raise SystemExit(f"no results.parquet under {sweep}: the sweep did not get as far as its first trial")
table = pd.read_parquet(sweep / "results.parquet")
spans = {}
for trial_dir in sweep.iterdir():
    lines = (trial_dir / "result.json").read_text().splitlines() if (trial_dir / "result.json").is_file() else []
    if lines:
        first, last = json.loads(lines[0]), json.loads(lines[-1])
        # the trainable's start (its first report minus that iteration's time) to its last report, on the clock
        spans[last["trial_id"]] = (first["timestamp"] - first["time_this_iter_s"] - origin,
                                   last["timestamp"] - origin, last.get("pid"), last["time_total_s"])

smi = Path(os.environ["SMI"])
app_mem, per_sample = {}, {}
if smi.is_file():
    for line in smi.read_text().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 4 and parts[1] == "app" and parts[2].isdigit():
            pid, mem = int(parts[2]), float(parts[3]) if parts[3].replace(".", "").isdigit() else 0.0
            app_mem[pid] = max(app_mem.get(pid, 0.0), mem)
            per_sample.setdefault(parts[0], set()).add(pid)
gpu = [[float(v) for v in line.split(",")[2:4]] for line in (smi.read_text().splitlines() if smi.is_file() else [])
       if ", gpu, " in line and "N/A" not in line]

rows = []
for row in table.itertuples():
    start, end, pid, total = spans.get(row.trial_id, (float("nan"), float("nan"), None, float("nan")))
    rows.append({"trial": row.trial_id, "group": row.group, "precision": row.precision, "channels_last": row.channels_last,
                 "status": row.status, "start_s": start, "end_s": end, "wall_s": total,
                 "fit_s": row.train_seconds, "val_acc": row.val_acc, "test_upright": row.test_acc_upright,
                 "test_orbit": row.test_acc_orbit, "eq_error": row.eq_error,
                 "gpu_MiB": app_mem.get(pid, float("nan")) if app_mem else float("nan")})
frame = pd.DataFrame(rows)
pd.set_option("display.width", 200)
print(frame.to_string(index=False, float_format=lambda v: f"{v:.1f}" if abs(v) >= 1 else f"{v:.3f}"
                      if abs(v) >= 0.01 or v == 0 else f"{v:.1e}"))
print("(start_s/end_s: seconds after `equisweep sweep` began, to 1 s; wall_s: Tune's time_total_s of the trial;"
      " fit_s: Lightning fit; gpu_MiB: peak of the trial's process in nvidia-smi)")

events = sorted([(s, 1) for s, e, *_ in spans.values()] + [(e, -1) for s, e, *_ in spans.values()],
                key=lambda ev: (ev[0], ev[1]))
running = most = 0
for _, step in events:
    running += step
    most = max(most, running)
together = max(0.0, min(e for _, e, *_ in spans.values()) - max(s for s, *_ in spans.values())) if spans else 0.0
print(f"concurrency from the trials' results: at most {most} of {len(spans)} trials running at once; all "
      f"{len(spans)} overlapped for {together:.1f} s")
if per_sample:
    print(f"concurrency from nvidia-smi (1 s samples): at most {max(len(p) for p in per_sample.values())} "
          f"processes on the GPU at once; {len(app_mem)} distinct processes seen")
elif smi.is_file():
    print("nvidia-smi listed no compute processes (a container's PID namespace hides them): concurrency from the "
          "trials' results only")
if gpu:
    print(f"GPU during the sweep ({len(gpu)} samples): peak utilisation {max(u for u, _ in gpu):.0f}%, mean "
          f"{sum(u for u, _ in gpu) / len(gpu):.0f}%; peak memory used {max(m for _, m in gpu):.0f} MiB")
finished = int((frame["status"] == "finished").sum())
verdict = "PASS" if finished == 4 and most == 4 else "FAIL"
print(f"{verdict}: {finished}/4 trials finished, {most} ran concurrently")
EOF

# -- 4. packed training ------------------------------------------------------------------------------------------
pack() {  # $1: label, rest: bench_pack arguments
  local label=$1; shift
  section "bench_pack on $DEVICE, $label (seed-runs per hour; speedup = packed / separate)"
  if timeout 150 "$PY" -m benchmarks.bench_pack --device "$DEVICE" "$@" > "$WORK/results/pack_$label.txt" 2>&1; then
    grep -v -i warn "$WORK/results/pack_$label.txt"
  else
    echo "bench_pack failed or timed out (exit $?); its last lines:"; tail -n 15 "$WORK/results/pack_$label.txt"
  fi
}
if [ "$DEVICE" = cuda ]; then
  for precision in bf16-mixed 32-true; do
    pack "paper_$precision" --preset paper_rotmnist --precision "$precision" --concurrent 4 --packs 16 32 64 \
      --steps 40 --warmup 10
  done
else
  pack quick_small --preset quick --packs 2 --steps 5 --warmup 2  # the CPU path only: its full table is below
fi

section "done"
echo "gpu_check: total $(elapsed "$START" "$(now)") s; tables, logs and results.parquet in $WORK/results" \
     "${GPU_CHECK_OUT:+(copied to $GPU_CHECK_OUT)}"
