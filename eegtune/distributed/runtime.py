"""Starting or joining Ray the way every eegtune entry point needs it."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

# Ray Train's controller takes at most one report per worker per poll, and polls every
# 2 s by default: a fold reporting 0.2 s epochs would wait ~1.8 s at every report. A
# quarter second keeps reports flowing at the cost of a few cheap status calls.
TRAIN_POLL_ENV = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"
TRAIN_POLL_S = "0.25"


# An S3-compatible endpoint (``--s3-endpoint``) must reach the workers that read the store
# and write the folds' outputs; credentials stay with each node (its instance profile).
FORWARDED_ENV = ("AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", "AWS_REGION")

logger = logging.getLogger(__name__)


def _runtime_env() -> dict:
    env = {TRAIN_POLL_ENV: os.environ.get(TRAIN_POLL_ENV, TRAIN_POLL_S)}
    env.update({k: os.environ[k] for k in FORWARDED_ENV if os.environ.get(k)})
    return {"env_vars": env}


# On Linux Ray turns a node address of 127.0.0.1 into the machine's outward address and
# listens on every interface. Its one switch for a loopback-only node is this variable
# (named for the platforms where it is the default), read when Ray computes the address.
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@contextlib.contextmanager
def _loopback_only() -> Iterator[None]:
    """While a local Ray starts: its GCS, raylet and workers take 127.0.0.1 only.

    Scoped to the start, so a multi-node ``ray.cluster_utils.Cluster`` started later in
    the same process (the tests do) still gets routable addresses.
    """
    from ray._private import ray_constants

    saved_env, saved_flag = os.environ.get(LOOPBACK_ENV), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[LOOPBACK_ENV] = "0"  # inherited by the processes ray.init spawns
    ray_constants.ENABLE_RAY_CLUSTER = False  # this process read the variable at import
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_flag
        if saved_env is None:
            os.environ.pop(LOOPBACK_ENV, None)
        else:
            os.environ[LOOPBACK_ENV] = saved_env


def start_ray(
    address: str | None = None,
    num_cpus: int | None = None,
    object_store_memory: int | None = None,
    num_gpus: float | None = None,
) -> None:
    """Join the cluster at ``address``, or start a local Ray bound to 127.0.0.1.

    The local Ray keeps its dashboard process (on localhost only): Ray needs it to clean
    up the placement groups of trials that ASHA stops, or the next trial can wait forever
    for their CPUs.
    """
    import ray

    if address:
        ray.init(address=address, log_to_driver=False, runtime_env=_runtime_env())
        return
    # address="local" always starts a fresh instance, even if another Ray on this machine
    # (a user's `ray start`, another run) left its address where ray.init would find it.
    with _loopback_only():
        ray.init(
            address="local",
            num_cpus=num_cpus,
            num_gpus=num_gpus,
            object_store_memory=object_store_memory,
            include_dashboard=True,
            dashboard_host="127.0.0.1",
            _node_ip_address="127.0.0.1",
            log_to_driver=False,
            runtime_env=_runtime_env(),
        )


def wait_for_resources(
    workers: int, cpus_per_worker: float, gpus_per_worker: float, timeout_s: float, log=None
) -> dict[str, float]:
    """Ask the autoscaler for ``workers`` fold workers' resources and wait until the
    cluster has them, or ``timeout_s`` passes; return the cluster's resources then.

    A cluster whose GPU worker type starts at ``min_workers: 0`` has no GPU until something
    asks for one, and the resource plan is made from what the cluster has now. On a cluster
    without an autoscaler the request is a no-op and this only waits.
    """
    log = log or logger.info
    import time

    import ray
    from ray.autoscaler.sdk import request_resources

    def short(have: dict[str, float]) -> bool:
        return have.get("CPU", 0) < workers * cpus_per_worker - 1e-9 or (
            have.get("GPU", 0) < workers * gpus_per_worker - 1e-9
        )

    have = ray.cluster_resources()
    if not short(have) or timeout_s <= 0:
        return have
    bundle = {"CPU": cpus_per_worker, **({"GPU": gpus_per_worker} if gpus_per_worker else {})}
    request_resources(bundles=[bundle] * workers)
    deadline, next_note = time.monotonic() + timeout_s, 0.0
    while short(have) and time.monotonic() < deadline:
        if time.monotonic() >= next_note:
            log(
                f"waiting up to {deadline - time.monotonic():.0f} s for the autoscaler: "
                f"{workers} × {bundle}, the cluster has CPU {have.get('CPU', 0):g}, "
                f"GPU {have.get('GPU', 0):g}"
            )
            next_note = time.monotonic() + 30
        time.sleep(2)
        have = ray.cluster_resources()
    return have
