"""The ImageNet preset's pre-flight on a tiny folder dataset written here: every arm, its static verdict, and the
data check (the spec's ``data_dir`` is relative, so the tree goes where a run would look from its working dir)."""

import subprocess
import sys
from pathlib import Path

from equisweep.pipeline.sweep.preflight import preflight
from equisweep.pipeline.sweep.spec import load_sweep
from tests.datamodules.test_folder import write_tree

SPEC = Path(__file__).resolve().parents[3] / "sweeps" / "paper_imagenet.yaml"


def test_dry_run_lists_every_arm_with_its_verdict_and_finds_the_folder(tmp_path):
    write_tree(tmp_path / "data" / "imagenet", {"train": 2, "val": 1})
    result = subprocess.run([sys.executable, "-m", "equisweep", "sweep", str(SPEC), "--dry-run"],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("equisweep: warning: ")]
    assert not any("data_dir" in line for line in warnings)  # the folder is found; only the missing GPU is said
    _, table = result.stdout.split("\n\n")
    lines = table.splitlines()
    assert lines[-1] == "14 trials"
    arms = {}
    assert lines[-2] == "14 packed trials of up to 16 seeds (pack), resources each"  # channels-last: one seed each
    for line in lines[:-2]:
        values = dict(setting.split("=") for setting in line.split()[1:])
        arm = (values["group"], int(values["input_size"]), values.get("subsampling", "stride"))
        arms.setdefault(arm, set()).add(values["exact"])
    assert arms == {("z2", 224, "stride"): {"-"},
                    ("p4", 224, "stride"): {"no"}, ("p4", 225, "stride"): {"yes"}, ("p4", 224, "adaptive"): {"yes"},
                    ("p4m", 224, "stride"): {"no"}, ("p4m", 225, "stride"): {"yes"}, ("p4m", 224, "adaptive"): {"yes"}}


def test_dry_run_names_the_missing_split(tmp_path, monkeypatch):
    write_tree(tmp_path / "data" / "imagenet", {"train": 2})
    monkeypatch.chdir(tmp_path)
    found = [w for w in preflight(load_sweep(SPEC)).warnings if w.startswith("data_dir")]
    assert found == [f"data_dir: dataset 'folder' is missing from {tmp_path}/data/imagenet (no val); trials fail: "
                     "give it train/ and val/ folders with one subfolder of images per class"]
