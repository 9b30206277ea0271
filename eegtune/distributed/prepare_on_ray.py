"""``eegtune prepare --address``: each subject's recordings prepared as a Ray task.

The unit of work is the same as on one machine (one subject of one release), so resuming,
atomic writes and the manifest behave identically. The store must be a URI (``s3://…``)
or on storage that every node writes to at the same path. The data layer knows nothing
of Ray: :func:`prepare_on_ray` hands :func:`eegtune.data.prepare.prepare` a unit runner.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path

from eegtune import storage
from eegtune.data.prepare import (
    PrepareOptions,
    PrepareSummary,
    ProgressSink,
    SubjectUnit,
    prepare,
    process_unit,
)


def run_units_on_ray(
    units: list[SubjectUnit], store: str, options: PrepareOptions, address: str = "local"
) -> Iterator[dict]:
    """Yield unit records as their tasks finish, keeping a bounded number in flight."""
    import ray

    if not ray.is_initialized():
        from eegtune.distributed.runtime import start_ray

        start_ray(None if address == "local" else address)
    task = ray.remote(num_cpus=1, max_retries=1)(process_unit)
    # Two tasks per CPU keeps every core busy without queueing the whole release at once.
    limit = max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
    queue = list(units)
    pending = []
    where = storage.absolute(store)
    try:
        while queue or pending:
            while queue and len(pending) < limit:
                pending.append(task.remote(queue.pop(0), where, options))
            done, pending = ray.wait(pending, num_returns=1)
            yield ray.get(done[0])
    finally:
        for ref in pending:
            ray.cancel(ref)


def prepare_on_ray(
    roots: list[Path],
    store: str | Path,
    options: PrepareOptions,
    address: str = "local",
    progress: ProgressSink | None = None,
    max_subjects: int | None = None,
) -> PrepareSummary:
    """:func:`prepare` with the units run as Ray tasks on ``address`` ("local": a new
    local Ray; "auto" or HOST:PORT: a running cluster)."""
    runner = partial(run_units_on_ray, address=address)
    return prepare(roots, store, options, progress, max_subjects, run_units=runner)
