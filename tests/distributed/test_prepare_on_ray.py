import pytest

from eegtune.data.prepare import PrepareOptions, prepare
from eegtune.data.store import load_manifest
from eegtune.distributed.prepare_on_ray import prepare_on_ray
from eegtune.distributed.runtime import start_ray

pytestmark = pytest.mark.ray


@pytest.mark.timeout(180)
def test_prepare_as_ray_tasks_writes_the_same_store(small_bids, tmp_path):
    import ray

    prepare([small_bids], tmp_path / "local", PrepareOptions())
    start_ray(num_cpus=2)
    try:
        summary = prepare_on_ray([small_bids], tmp_path / "ray", PrepareOptions())
    finally:
        ray.shutdown()
    assert summary.units == 2 and summary.reused == 0
    files = [
        sorted((f["path"], f["sha256"]) for f in load_manifest(tmp_path / s)["files"])
        for s in ("local", "ray")
    ]
    assert files[0] == files[1] and len(files[0]) == 4
