"""The cluster recipes (cluster/, the Dockerfile, the lock): W&B online when a key is present and offline otherwise,
the key never in a recipe; each recipe valid for the tool that reads it (Ray's cluster schema, KubeRay's RayJob
fields); every node on one commit and the locked versions; the GPUs Slurm allocated given to Ray; a failed job
retried and resumed."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path

import jsonschema
import pytest
import yaml
from packaging.requirements import Requirement

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: tomli, which pytest needs there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[3]
CLUSTER = ROOT / "cluster"
LOCK = ROOT / "requirements" / "lock.txt"


def _no_forced_mode_or_key(text: str) -> None:
    assert "--wandb-mode" not in text  # the spec's mode (auto) decides: online with a key, offline without
    assert not re.search(r"WANDB_API_KEY\s*[:=]\s*['\"]?[0-9a-f]{20,}", text)  # no key written into the recipe


def _rayjob() -> dict:
    docs = yaml.safe_load_all((CLUSTER / "rayjob.yaml").read_text())
    return next(doc for doc in docs if doc["kind"] == "RayJob")


def _pod_templates(job: dict) -> list[dict]:
    cluster = job["spec"]["rayClusterSpec"]
    return [cluster["headGroupSpec"]["template"], *(group["template"] for group in cluster["workerGroupSpecs"])]


def _aws() -> dict:
    return yaml.safe_load((CLUSTER / "aws-gpu.yaml").read_text())


def _locked_versions() -> dict[str, str]:
    """The lock's pin of each package for this Python and platform."""
    pins = {}
    for line in LOCK.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate():
                (spec,) = requirement.specifier
                pins[requirement.name.lower()] = spec.version
    return pins


def test_rayjob_reads_the_key_from_an_optional_secret_in_every_pod():
    job = _rayjob()
    _no_forced_mode_or_key(job["spec"]["entrypoint"] + job["spec"]["runtimeEnvYAML"])
    for template in _pod_templates(job):
        for container in template["spec"]["containers"]:
            sources = [source["secretRef"] for source in container.get("envFrom", []) if "secretRef" in source]
            assert sources == [{"name": "equisweep-wandb", "optional": True}], container["name"]
    assert yaml.safe_load(job["spec"]["runtimeEnvYAML"])["env_vars"]["WANDB_DIR"].startswith("/mnt/shared/")


def _closed(schema):
    """The schema with every object that lists its fields closed to others: the API server prunes unknown fields
    without a word, so a misspelt field would silently do nothing."""
    if isinstance(schema, dict):
        schema = {key: _closed(value) for key, value in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
    elif isinstance(schema, list):
        schema = [_closed(item) for item in schema]
    return schema


def test_rayjob_has_only_fields_of_the_rayjob_crd():
    schema = _closed(yaml.safe_load((Path(__file__).parent / "rayjob_crd_fields.yaml").read_text()))
    jsonschema.Draft202012Validator(schema).validate(_rayjob())
    with pytest.raises(jsonschema.ValidationError, match="backofLimit"):  # the check sees a misspelt field
        jsonschema.Draft202012Validator(schema).validate({**_rayjob(), "spec": {**_rayjob()["spec"], "backofLimit": 3}})


def test_rayjob_retries_a_failed_job_on_a_new_cluster_and_resumes_the_sweep():
    spec = _rayjob()["spec"]
    assert spec["backoffLimit"] >= 1  # spec.backoffLimit: the whole job again; submitterConfig's only resubmits
    bash, dash_c, script = shlex.split(spec["entrypoint"])
    assert (bash, dash_c) == ("bash", "-c") and "--resume" in shlex.split(script)


def test_every_rayjob_pod_has_a_memory_backed_dev_shm():
    for template in _pod_templates(_rayjob()):
        volumes = template["spec"]["volumes"]
        memory_volumes = {v["name"] for v in volumes if v.get("emptyDir", {}).get("medium") == "Memory"}
        for container in template["spec"]["containers"]:
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert mounts.get("/dev/shm") in memory_volumes, container["name"]


def test_image_ray_and_python_match_the_lock_the_rayjob_and_the_aws_nodes():
    dockerfile = (ROOT / "Dockerfile").read_text()
    ray_version, major, minor = re.search(r"^FROM rayproject/ray:([\d.]+)-py(\d)(\d+)-gpu$", dockerfile, re.M).groups()
    assert ray_version == _locked_versions()["ray"] == _rayjob()["spec"]["rayClusterSpec"]["rayVersion"]
    assert "-c requirements/lock.txt" in dockerfile
    assert any(f"uv venv --quiet --python {major}.{minor} " in command for command in _aws()["setup_commands"])


def test_dockerignore_keeps_local_state_out_and_what_the_image_needs_in():
    patterns = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]

    def ignored(path: str) -> bool:
        return any(fnmatch(path, pattern) or fnmatch(path, pattern.removeprefix("**/")) for pattern in patterns)

    for local_state in [".venv", ".git", "data", "runs", "wandb", "equisweep/__pycache__"]:
        assert ignored(local_state), local_state
    for needed in ["pyproject.toml", "README.md", "requirements/lock.txt", "equisweep/__init__.py", "sweeps"]:
        assert not ignored(needed), needed


def test_aws_recipe_loads_the_key_file_into_every_nodes_ray():
    text = (CLUSTER / "aws-gpu.yaml").read_text()
    _no_forced_mode_or_key(text)
    config = yaml.safe_load(text)
    assert config["file_mounts"]["~/.equisweep-secrets.env"] == "~/.equisweep-secrets.env"
    for commands in (config["head_start_ray_commands"], config["worker_start_ray_commands"]):
        start = next(command for command in commands if "ray start" in command)
        assert start.index("set -a; . ~/.equisweep-secrets.env; set +a;") < start.index("ray start")


def test_aws_recipe_is_valid_for_rays_cluster_launcher():
    ray_package = Path(importlib.util.find_spec("ray").origin).parent
    schema = json.loads((ray_package / "autoscaler" / "ray-schema.json").read_text())
    jsonschema.validate(_aws(), schema)
    with pytest.raises(jsonschema.ValidationError):  # the schema refuses what `ray up` would refuse
        jsonschema.validate({**_aws(), "setup_command": []}, schema)


def _checkout_command() -> str:
    return next(command for command in _aws()["setup_commands"] if "commit=" in command)


def _bash(command: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HOME": str(home), "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    home.mkdir(exist_ok=True)
    return subprocess.run(["bash", "-c", command], cwd=home, env=env, capture_output=True, text=True, timeout=60)


def test_aws_setup_refuses_to_run_without_a_commit(tmp_path):
    result = _bash(_checkout_command(), tmp_path)
    assert result.returncode == 2
    assert "set commit= in setup_commands" in result.stderr and "git rev-parse HEAD" in result.stderr
    assert not (tmp_path / "equisweep").exists()


def test_aws_setup_checks_out_the_commit_given_not_the_branch_tip(tmp_path):
    origin = tmp_path / "origin"
    for step in ["git init --quiet origin", "git -C origin commit --quiet --allow-empty -m first",
                 "git -C origin commit --quiet --allow-empty -m second"]:
        assert _bash(step, tmp_path).returncode == 0
    first = _bash("git -C origin rev-parse HEAD~1", tmp_path).stdout.strip()
    command = _checkout_command().replace("https://github.com/YOUR-ORG/equisweep.git", str(origin))
    result = _bash(command.replace("commit=YOUR-COMMIT", f"commit={first}"), tmp_path / "node")
    assert result.returncode == 0, result.stderr
    assert _bash("git -C equisweep rev-parse HEAD", tmp_path / "node").stdout.strip() == first


def test_aws_nodes_install_from_the_lock_and_run_under_roles_limited_to_the_bucket():
    config = _aws()
    install = next(command for command in config["setup_commands"] if "equisweep[aws]" in command)
    assert " install " in install and "-c ~/equisweep/requirements/lock.txt" in install
    assert not any("==" in command for command in config["setup_commands"] if "uv==" not in command)
    profiles = {name: node["node_config"]["IamInstanceProfile"]["Arn"].rsplit("/", 1)[1]
                for name, node in config["available_node_types"].items()}
    assert profiles == {"head": "equisweep-head", "gpu_worker": "equisweep-worker"}
    policy = json.loads((CLUSTER / "aws-bucket-policy.json").read_text())
    resources = {statement["Resource"] for statement in policy["Statement"]}
    assert resources == {"arn:aws:s3:::YOUR-BUCKET", "arn:aws:s3:::YOUR-BUCKET/*"}
    assert all(action.startswith("s3:") and "*" not in action
               for statement in policy["Statement"] for action in statement["Action"])


def _run_slurm_script(tmp_path: Path, **slurm_env: str) -> list[str]:
    """slurm.sbatch with srun, scontrol, ray and equisweep stand-ins that log what they were asked: the `ray start`
    command lines."""
    bin_dir, venv_bin = tmp_path / "bin", tmp_path / "venv" / "bin"
    bin_dir.mkdir()
    venv_bin.mkdir(parents=True)
    (venv_bin / "activate").write_text("")
    log = tmp_path / "ray.log"
    stand_ins = {
        "srun": 'while [[ $1 == -* ]]; do [[ $1 == -w ]] && shift; shift; done; exec "$@"',
        "scontrol": "printf 'node1\\nnode2\\n'",
        "ray": f'echo "$*" >> {log}',
        "equisweep": "true",
        "sleep": "true",
    }
    for name, body in stand_ins.items():
        (bin_dir / name).write_text(f"#!/bin/bash\n{body}\n")
        (bin_dir / name).chmod(0o755)
    (bin_dir / "python").symlink_to(sys.executable)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(tmp_path), "VENV": str(tmp_path / "venv"),
           "SLURM_JOB_NODELIST": "node[1-2]", "SLURM_CPUS_PER_TASK": "16", **slurm_env}
    subprocess.run(["bash", str(CLUSTER / "slurm.sbatch")], cwd=tmp_path, env=env, check=True, timeout=60)
    return log.read_text().splitlines()


def test_slurm_gives_ray_the_gpus_allocated_with_gres(tmp_path):
    starts = _run_slurm_script(tmp_path, SLURM_GPUS_ON_NODE="2")  # --gres=gpu:2 sets no SLURM_GPUS_PER_TASK
    assert len(starts) == 2 and all("--num-gpus=2" in start.split() for start in starts)


def test_slurm_lets_ray_count_the_gpus_where_slurm_does_not_say(tmp_path):
    starts = _run_slurm_script(tmp_path)
    assert len(starts) == 2 and not any("--num-gpus" in start for start in starts)


def test_slurm_recipe_forces_no_mode():
    _no_forced_mode_or_key((CLUSTER / "slurm.sbatch").read_text())


def test_the_lock_satisfies_every_requirement_in_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = _locked_versions()
    extras = [line for lines in project["optional-dependencies"].values() for line in lines]
    for line in [*project["dependencies"], *extras]:
        requirement = Requirement(line)
        assert requirement.specifier.contains(pins[requirement.name.lower()]), f"{line}: refresh requirements/lock.txt"


def test_the_install_rule_installs_from_the_lock_and_reruns_when_it_changes(tmp_path):
    stamp = tmp_path / ".installed-stamp"
    stamp.touch()
    make = ["make", "-C", str(ROOT), f"VENV={tmp_path}"]
    assert subprocess.run([*make, "-q", str(stamp)]).returncode == 0  # up to date: nothing to install
    rerun = subprocess.run([*make, "-n", "-W", "requirements/lock.txt", str(stamp)], capture_output=True, text=True)
    assert "pip install -q -c requirements/lock.txt -e '.[dev]'" in rerun.stdout
