"""The cluster recipes stream to W&B online when a key is present and offline otherwise: none of them forces a mode,
and the key reaches the driver and the trials through their environment, never through a command line or a file in
the repository."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

CLUSTER = Path(__file__).resolve().parents[3] / "cluster"


def _no_forced_mode_or_key(text: str) -> None:
    assert "--wandb-mode" not in text  # the spec's mode (auto) decides: online with a key, offline without
    assert not re.search(r"WANDB_API_KEY\s*[:=]\s*['\"]?[0-9a-f]{20,}", text)  # no key written into the recipe


def test_rayjob_reads_the_key_from_an_optional_secret_in_every_pod():
    docs = list(yaml.safe_load_all((CLUSTER / "rayjob.yaml").read_text()))
    job = next(doc for doc in docs if doc["kind"] == "RayJob")
    _no_forced_mode_or_key(job["spec"]["entrypoint"] + job["spec"]["runtimeEnvYAML"])
    cluster = job["spec"]["rayClusterSpec"]
    templates = [cluster["headGroupSpec"]["template"], *(g["template"] for g in cluster["workerGroupSpecs"])]
    for template in templates:
        for container in template["spec"]["containers"]:
            sources = [source["secretRef"] for source in container.get("envFrom", []) if "secretRef" in source]
            assert sources == [{"name": "equisweep-wandb", "optional": True}], container["name"]
    assert yaml.safe_load(job["spec"]["runtimeEnvYAML"])["env_vars"]["WANDB_DIR"].startswith("/mnt/shared/")


def test_aws_recipe_loads_the_key_file_into_every_nodes_ray():
    text = (CLUSTER / "aws-gpu.yaml").read_text()
    _no_forced_mode_or_key(text)
    config = yaml.safe_load(text)
    assert config["file_mounts"]["~/.equisweep-secrets.env"] == "~/.equisweep-secrets.env"
    for commands in (config["head_start_ray_commands"], config["worker_start_ray_commands"]):
        start = next(command for command in commands if "ray start" in command)
        assert start.index("set -a; . ~/.equisweep-secrets.env; set +a;") < start.index("ray start")


def test_slurm_recipe_forces_no_mode():
    _no_forced_mode_or_key((CLUSTER / "slurm.sbatch").read_text())
