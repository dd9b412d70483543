"""The dry run on a cluster: a Ray Client address is steered to ``ray job submit``, and local storage is flagged only
where the cluster has more than one node (counted on the real Ray it joins; two nodes: ``test_cluster.py``)."""

from pathlib import Path

import yaml
from typer.testing import CliRunner

from equisweep.cli import app
from equisweep.pipeline.sweep.preflight import preflight
from equisweep.pipeline.sweep.spec import load_sweep


def _spec(tmp_path: Path, **settings) -> Path:
    path = tmp_path / "spec.yaml"
    spec = {"name": "pre", "dataset": "mnist69", "group": "z2", "storage": str(tmp_path / "store"),
            "wandb": {"mode": "disabled"}, **settings}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_the_dry_run_steers_a_ray_client_address_to_ray_job_submit(tmp_path):
    result = CliRunner().invoke(app, ["sweep", str(_spec(tmp_path)), "--dry-run", "--address", "ray://10.0.0.7:10001"])
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        "equisweep: warning: address: 'ray://10.0.0.7:10001' is a Ray Client address, where Tune runs on the head and "
        "this process cannot read its results; submit the sweep as a job instead: ray job submit --address "
        "http://10.0.0.7:8265 -- equisweep sweep SPEC"]
    assert result.stdout.splitlines()[-1] == "1 trials" and not (tmp_path / "store").exists()


def test_on_one_node_local_storage_is_fine(tmp_path, ray_local):
    assert preflight(load_sweep(_spec(tmp_path))).warnings == ()  # the embedded Ray this process joined: one node
