#!/usr/bin/env bash
# The GPU check: one prepared script, under 8 minutes on one H100/H200, that runs on a GPU machine's own python3
# (torch, Lightning, pandas, pyarrow, typer, rich, matplotlib, scipy; no ray, wandb, optuna, pydantic, e2cnn or
# mlxtend; no network). What equisweep's models, training and packing need beyond that travels as wheels
# (benchmarks/gpu_wheels.sh), unzipped here onto PYTHONPATH. It prints and writes into OUT_DIR:
#   1. the machine: date, GPU (nvidia-smi), python and torch versions, and which optional packages import;
#   2. bench_gconv: p4/p4m group conv fwd+bwd (and eval fwd) against one plain conv of the same expanded shape,
#      fp32 and bf16, at 28 and 224;
#   3. bench_pack: the paper's rotated-MNIST cell (P4CNN, batch 256), K separate runs (4 sharing the GPU) against
#      packs of K = 1, 16, 32, 64 in bf16-mixed and 32-true: seed-runs per GPU-hour, GPU memory per pack, and the
#      projected hours of sweeps/paper_rotmnist.yaml from the best row;
#   4. profile_pack: one packed step under torch.profiler (where the time goes), and torch.compile / CUDA graphs
#      against eager for the packed step at small K;
#   5. four fractional-GPU trials through Ray, only where ray imports (its wheel is too big to travel).
#
# Run from the repo root:   bash benchmarks/gpu_check.sh OUT_DIR
# OUT_DIR gets gpu_check.txt (everything printed), gpu_check.json (every table's rows) and one .md per table:
# at most 8 files. Settings (environment):
#   GPU_CHECK_ACCELERATOR=cpu  the same path on the CPU at small sizes (the rehearsal: a few minutes)
#   GPU_CHECK_SIZE             full (GPU default), small (CPU default) or tiny (seconds: the test's)
#   GPU_CHECK_WHEELS           a folder of wheels to unzip onto PYTHONPATH (default .gpu_wheels; absent: none)
#   GPU_CHECK_PYTHON           the interpreter (default python3)
#   GPU_CHECK_COMPILE=0        leave out the torch.compile ratio
#   GPU_CHECK_BUDGET_S         seconds for all parts together (default 460; each part's limit scales with it)
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
ROOT=$(pwd)
[ $# -eq 1 ] || { echo "usage: bash benchmarks/gpu_check.sh OUT_DIR" >&2; exit 2; }
mkdir -p "$1" && OUT=$(cd "$1" && pwd) || exit 2
PY=${GPU_CHECK_PYTHON:-python3}
ACCELERATOR=${GPU_CHECK_ACCELERATOR:-gpu}
[ "$ACCELERATOR" = gpu ] && DEVICE=cuda || DEVICE=cpu
SIZE=${GPU_CHECK_SIZE:-$([ "$DEVICE" = cuda ] && echo full || echo small)}
WHEELS=${GPU_CHECK_WHEELS:-$ROOT/.gpu_wheels}
# The parts' time limits stop here, leaving the rest of 8 minutes for start-up and the summary.
BUDGET_S=${GPU_CHECK_BUDGET_S:-460}
START=$SECONDS

WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")
mkdir -p "$WORK/home" "$WORK/tables" "$WORK/site"
printf 'provider: {type: local}\n' > "$WORK/home/ray_bootstrap_config.yaml"  # Ray then probes no cloud metadata
export HOME=$WORK/home BENCH_RESULTS_DIR=$WORK/tables
export RAY_USAGE_STATS_ENABLED=0 WANDB_MODE=disabled PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
unset RAY_ADDRESS
exec > >(tee "$OUT/gpu_check.txt") 2>&1
TEE=$!
finish() { rm -rf "$WORK"; exec >&- 2>&-; wait "$TEE"; }  # gpu_check.txt complete when the script returns
trap finish EXIT

section() { printf '\n== %s ==\n' "$*"; }
left() { echo $((BUDGET_S - (SECONDS - START))); }
# Lines left out of a part's output: warnings, Lightning's banners and the profiler's complaint on a CPU.
NOISE='warn|^\s*$|available: |litlogger|Automatic Mixed Precision|Trainer.fit. stopped|gpuGetDeviceCount|^W[0-9]{4} '
part() {  # $1: seconds at most in a 460 s budget, rest: a command; its output is shown, a failure said in one line
  local limit=$(($1 * BUDGET_S / 460)); shift
  [ "$limit" -gt "$(left)" ] && limit=$(left)
  if [ "$limit" -le 5 ]; then echo "skipped: the check's time budget is spent"; FAILED=$((FAILED + 1)); return; fi
  timeout "$limit" "$@" 2>&1 | grep -v -i -E "$NOISE"
  local rc=${PIPESTATUS[0]}
  [ "$rc" -eq 0 ] && return
  echo "FAILED (exit $rc$([ "$rc" -eq 124 ] && echo ", over its ${limit} s"))"
  FAILED=$((FAILED + 1))
}
FAILED=0

case $SIZE in
  full) GCONV=(--sizes 28 224 --batch 64 --channels 16 --repeats 20)
        PACK=(--preset paper_rotmnist --packs 1 16 32 64 --concurrent 4 --steps 30 --warmup 10
              --precision bf16-mixed 32-true)
        PROFILE=(--preset paper_rotmnist --precision bf16-mixed --steps 10 --warmup 5 --repeats 20)
        PROFILED=16 COMPILED=(1 4) ;;
  small) GCONV=(--sizes 28 --batch 8 --channels 8 --repeats 3)
         PACK=(--preset quick --packs 1 2 4 --concurrent 2 --steps 3 --warmup 1 --precision bf16-mixed 32-true)
         PROFILE=(--preset quick --precision 32-true --steps 3 --warmup 1 --repeats 3)
         PROFILED=2 COMPILED=(2) ;;
  tiny) GCONV=(--sizes 8 --batch 2 --channels 2 --repeats 1)
        PACK=(--preset quick --packs 2 --steps 1 --warmup 1 --precision bf16-mixed)
        PROFILE=(--preset quick --precision 32-true --steps 1 --warmup 1 --repeats 1)
        PROFILED=2 COMPILED=(2) ;;
  *) echo "gpu_check: GPU_CHECK_SIZE is full, small or tiny, not '$SIZE'" >&2; exit 2 ;;
esac
[ "${GPU_CHECK_COMPILE:-1}" = 0 ] && COMPILED=()

# -- 1. the machine, and the carried wheels ----------------------------------------------------------------------
section "machine"
echo "gpu_check: $(date -u +%Y-%m-%dT%H:%M:%SZ) host=$(hostname) cores=$(nproc) accelerator=$ACCELERATOR size=$SIZE"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit,mig.mode.current --format=csv
else
  echo "nvidia-smi: not found"
fi
shopt -s nullglob
wheels=("$WHEELS"/*.whl)
for wheel in "${wheels[@]}"; do "$PY" -m zipfile -e "$wheel" "$WORK/site" || exit 1; done
echo "carried wheels: ${#wheels[@]} from $WHEELS$([ ${#wheels[@]} -gt 0 ] && echo " (unzipped onto PYTHONPATH)")"
export PYTHONPATH=$ROOT:$WORK/site${PYTHONPATH:+:$PYTHONPATH}

"$PY" - "$DEVICE" <<'EOF' || { echo "gpu_check: torch sees no CUDA GPU here; stopping"; exit 1; }
import importlib.util
import sys

import torch

line = f"python {sys.version.split()[0]} torch {torch.__version__} cuda {torch.version.cuda}"
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    line += f" | {p.name} sm_{p.major}{p.minor} {p.total_memory / 2**30:.0f} GiB {p.multi_processor_count} SMs"
print(line)


def importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:  # a finder that refuses the name
        return False


# The benchmarks import equisweep's models, training and packing, which must need none of the first four.
print("importable: " + ", ".join(f"{n} {'yes' if importable(n) else 'no'}"
                                 for n in ("ray", "wandb", "optuna", "e2cnn", "mlxtend", "pydantic")))
sys.exit(sys.argv[1] == "cuda" and not torch.cuda.is_available())
EOF

# -- 2.-4. the benchmarks ----------------------------------------------------------------------------------------
section "bench_gconv on $DEVICE (ms, median; ours/conv2d < 1: the group conv is faster)"
part 100 "$PY" -m benchmarks.bench_gconv --device "$DEVICE" --dtypes fp32 bf16 "${GCONV[@]}"
section "bench_pack on $DEVICE (seed-runs per hour; speedup = packed / separate)"
part 200 "$PY" -m benchmarks.bench_pack --device "$DEVICE" "${PACK[@]}"
section "profile_pack on $DEVICE (where one packed step's time goes)"
part 70 "$PY" -m benchmarks.profile_pack --device "$DEVICE" "${PROFILE[@]}" --pack "$PROFILED" --compile-packs
section "profile_pack on $DEVICE: the packed step compiled against eager"
if [ ${#COMPILED[@]} -eq 0 ]; then
  echo "skipped (GPU_CHECK_COMPILE=0)"
else
  part 150 "$PY" -m benchmarks.profile_pack --device "$DEVICE" "${PROFILE[@]}" --pack 0 --compile-packs "${COMPILED[@]}"
fi

# -- 5. four trials sharing one GPU through Ray ------------------------------------------------------------------
section "Ray: 4 fractional-GPU trials"
if ! "$PY" -c 'import ray' 2>/dev/null; then
  echo "skipped: ray does not import here (its cp312 manylinux wheel is ~79 MB, over the 64 MiB that travel with" \
       "the working tree); the packing tables above need no Ray"
else
  cat > "$WORK/ray_check.yaml" <<EOF
name: ray_check
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
resources: {cpu: 2, gpu: $([ "$DEVICE" = cuda ] && echo 0.25 || echo 0)}
max_failures: 0
storage: $WORK/storage
wandb: {mode: disabled}
EOF
  ray_start=$SECONDS
  part 120 "$PY" -m equisweep sweep "$WORK/ray_check.yaml"
  echo "4 trials: $((SECONDS - ray_start)) s wall, Ray's start included"
fi

# -- the tables, gathered --------------------------------------------------------------------------------------------
section "done"
cp "$WORK"/tables/*.md "$OUT"/ 2>/dev/null
"$PY" - "$WORK/tables" "$OUT/gpu_check.json" <<'EOF'
import json
import sys
from pathlib import Path

tables = {path.stem: json.loads(path.read_text()) for path in sorted(Path(sys.argv[1]).glob("*.json"))}
Path(sys.argv[2]).write_text(json.dumps(tables, indent=1))
EOF
echo "gpu_check: $((SECONDS - START)) s, $FAILED part(s) failed; tables in $OUT: $(cd "$OUT" && ls | tr '\n' ' ')"
[ "$FAILED" -eq 0 ]
