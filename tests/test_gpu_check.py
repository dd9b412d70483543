"""The GPU check (benchmarks/gpu_check.sh) runs its CPU path where ray, wandb, optuna and e2cnn cannot be
imported, as on the GPU machine, and writes its tables into the folder it is given."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]

# Imported by every Python the check starts (PYTHONPATH): these packages are absent, as on the GPU machine.
ABSENT = '''
import importlib.abc
import sys


class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.partition(".")[0] in {"ray", "wandb", "optuna", "e2cnn"}:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


sys.meta_path.insert(0, Absent())
'''


@pytest.mark.slow
def test_gpu_check_cpu_path_runs_without_ray_wandb_optuna_e2cnn(tmp_path: Path) -> None:
    (tmp_path / "absent").mkdir()
    (tmp_path / "absent" / "sitecustomize.py").write_text(ABSENT)
    out = tmp_path / "out"
    env = os.environ | {"GPU_CHECK_ACCELERATOR": "cpu", "GPU_CHECK_SIZE": "tiny", "GPU_CHECK_COMPILE": "0",
                        "GPU_CHECK_PYTHON": sys.executable, "GPU_CHECK_WHEELS": str(tmp_path / "no_wheels"),
                        "PYTHONPATH": str(tmp_path / "absent")}
    done = subprocess.run(["bash", "benchmarks/gpu_check.sh", str(out)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    log = (out / "gpu_check.txt").read_text()
    assert done.returncode == 0, log
    assert "importable: ray no, wandb no, optuna no, e2cnn no" in log
    assert "skipped: ray does not import here" in log
    tables = json.loads((out / "gpu_check.json").read_text())
    assert set(tables) == {"bench_gconv", "bench_pack_quick", "profile_pack_quick"}
    assert sorted(p.name for p in out.glob("*.md")) == sorted(f"{name}.md" for name in tables)
    gconv = tables["bench_gconv"]["rows"]
    assert {row["case"] for row in gconv} == {f"{g} 8x8 {d} {m}" for g in ("p4", "p4m") for d in ("fp32", "bf16")
                                              for m in ("train", "eval")}
    assert "e2cnn_ms" not in gconv[0]  # e2cnn absent: its column is left out, not failed
    (pack,) = tables["bench_pack_quick"]["rows"]
    assert pack["K"] == 2 and pack["packed_runs_h"] > 0 and pack["separate_runs_h"] > 0
    assert pack["precision"] == "bf16-mixed"  # the runs trained at the precision asked for, not the preset's
    assert "quick.yaml: 20 seed-runs take" in log
    ops = tables["profile_pack_quick"]["rows"]
    assert any("convolution" in row["op"] for row in ops) and 0 < sum(row["share_%"] for row in ops) <= 100.01
