"""Keep an embedded Ray on 127.0.0.1.

On Linux Ray turns a node address of 127.0.0.1 into the machine's routable address and its servers listen on every
interface, ready for other nodes to join. An embedded Ray serves one process and has no other nodes, so while it
starts it is told what Ray tells itself on a laptop: this node is no cluster (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER``).
The processes it starts inherit that, and bind loopback only. Afterwards the setting is restored, so a later
``ray start`` or cluster join from this process behaves as Ray's default.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from ray._private import ray_constants


@contextlib.contextmanager
def loopback_only() -> Iterator[None]:
    name = ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR
    saved_env, saved_flag = os.environ.get(name), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[name] = "0"  # read by the raylet, GCS and agents as they start
    ray_constants.ENABLE_RAY_CLUSTER = False  # read by this process, already imported
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_flag
        if saved_env is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved_env
