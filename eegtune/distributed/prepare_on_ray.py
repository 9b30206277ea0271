"""``eegtune prepare --address``: each subject's recordings prepared as a Ray task.

The unit of work is the same as on one machine (one subject of one release), so resuming,
atomic writes and the manifest behave identically; the store must be on storage that
every node writes to at the same path.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from eegtune.data.prepare import PrepareOptions, SubjectUnit, process_unit


def run_units_on_ray(
    units: list[SubjectUnit], store: Path, options: PrepareOptions
) -> Iterator[dict]:
    """Yield unit records as their tasks finish, keeping a bounded number in flight."""
    import ray

    if not ray.is_initialized():
        from eegtune.distributed.runtime import start_ray

        start_ray(None if options.address == "local" else options.address)
    task = ray.remote(num_cpus=1, max_retries=1)(process_unit)
    # Two tasks per CPU keeps every core busy without queueing the whole release at once.
    limit = max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
    queue = list(units)
    pending = []
    try:
        while queue or pending:
            while queue and len(pending) < limit:
                pending.append(task.remote(queue.pop(0), Path(store).resolve(), options))
            done, pending = ray.wait(pending, num_returns=1)
            yield ray.get(done[0])
    finally:
        for ref in pending:
            ray.cancel(ref)
