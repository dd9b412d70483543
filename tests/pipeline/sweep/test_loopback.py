"""The embedded Ray listens on loopback only, and leaves Ray's cluster default as it found it."""

import os

import ray
from ray._private import ray_constants


def test_the_embedded_ray_serves_on_loopback_and_restores_the_cluster_setting(ray_local):
    assert [node["NodeManagerAddress"] for node in ray.nodes()] == ["127.0.0.1"]
    assert ray.get_runtime_context().gcs_address.startswith("127.0.0.1:")

    @ray.remote(num_cpus=0)
    def worker_address() -> str:
        return ray.util.get_node_ip_address()

    assert ray.get(worker_address.remote()) == "127.0.0.1"
    assert ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR not in os.environ  # a later `ray start` here may add nodes
    assert ray_constants.ENABLE_RAY_CLUSTER
