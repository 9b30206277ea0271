"""A local Ray for the tests that need one: fresh, 2 CPUs, shut down afterwards."""

from __future__ import annotations

import pytest
import ray  # a required dependency: a broken install must fail the suite, not skip it

from eegtune.distributed.runtime import start_ray


@pytest.fixture
def local_ray():
    start_ray(num_cpus=2)
    yield ray
    ray.shutdown()
