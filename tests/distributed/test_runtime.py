"""A local Ray listens on the loopback interface only."""

from __future__ import annotations

import os

import pytest

from eegtune.distributed.runtime import LOOPBACK_ENV, TRAIN_POLL_ENV, start_ray

pytestmark = [pytest.mark.ray]


def test_local_ray_is_bound_to_localhost_and_leaves_the_process_as_it_was():
    ray = pytest.importorskip("ray")
    from ray._private import ray_constants

    before = (os.environ.get(LOOPBACK_ENV), ray_constants.ENABLE_RAY_CLUSTER)
    start_ray(num_cpus=1)
    try:
        assert [n["NodeManagerAddress"] for n in ray.nodes()] == ["127.0.0.1"]
        assert ray.get_runtime_context().gcs_address.startswith("127.0.0.1:")

        @ray.remote
        def seen_by_a_worker() -> tuple[str, str | None]:
            return ray.util.get_node_ip_address(), os.environ.get(TRAIN_POLL_ENV)

        expected_poll = os.environ.get(TRAIN_POLL_ENV, "0.25")  # a setting of the user wins
        assert ray.get(seen_by_a_worker.remote()) == ("127.0.0.1", expected_poll)
    finally:
        ray.shutdown()
    # A multi-node test cluster started later in this process must get routable addresses.
    assert (os.environ.get(LOOPBACK_ENV), ray_constants.ENABLE_RAY_CLUSTER) == before
