"""A local Ray listens on the loopback interface only."""

from __future__ import annotations

import ipaddress
import os

import pytest

from eegtune.distributed.runtime import LOOPBACK_ENV, TRAIN_POLL_ENV, start_ray

pytestmark = [pytest.mark.ray]


def test_local_ray_is_bound_to_localhost_and_leaves_the_process_as_it_was():
    import ray
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


def _is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip.split("%")[0])
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1 on dual-stack sockets
    return (mapped or address).is_loopback


def test_every_socket_a_local_ray_listens_on_is_loopback():
    """What the processes really listen on, not what Ray says its addresses are."""
    import psutil
    import ray

    start_ray(num_cpus=1)
    try:

        @ray.remote
        def pid() -> int:
            return os.getpid()

        worker = ray.get(pid.remote())  # at least one worker process is up
        # Ray's GCS, raylet, dashboard, agents and workers all descend from this process.
        listening: dict[str, list[str]] = {}
        for proc in [psutil.Process(), *psutil.Process().children(recursive=True)]:
            try:
                name = proc.name()
                sockets = proc.net_connections(kind="inet")
            except psutil.NoSuchProcess:  # a short-lived helper that already exited
                continue
            for sock in sockets:
                if sock.status == psutil.CONN_LISTEN:
                    listening.setdefault(f"{name}[{proc.pid}]", []).append(sock.laddr.ip)
    finally:
        ray.shutdown()
    names = " ".join(listening)
    assert "gcs_server" in names and "raylet" in names and f"[{worker}]" in names, listening
    exposed = {p: ips for p, ips in listening.items() if not all(map(_is_loopback, ips))}
    assert not exposed, f"Ray processes listening beyond loopback: {exposed}"
