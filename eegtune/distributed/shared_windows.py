"""Memory mode on Ray: the store's windows once per node, in Ray's shared object store.

At the start of an experiment Ray tasks (about one per CPU, each a share of the
subjects) read the subjects' Parquet files, and each subject's windows (at the store's
dtype) become one object in the object store of the node that read them: the store is
sharded over the cluster's nodes. Every fold
worker of every trial then ``ray.get``s the subjects its fold needs. On the worker's
node that is a zero-copy, read-only view of shared memory; a subject read on another
node is pulled once into this node's store and shared from there. So the windows are
read from disk once per experiment, held once per node, and never copied per fold or
per trial: a batch is the only copy a worker makes (:meth:`WindowSet.take`).

The objects belong to the process that ran :func:`share_windows` (the ``eegtune tune``
driver): they live as long as the experiment, and Ray re-runs a lost subject's read task
if a node dies.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from eegtune import storage
from eegtune.data.store import read_window_files, store_files
from eegtune.training.fold_data import (
    ID_COLUMNS,
    FoldSource,
    FoldSubjects,
    WindowSet,
    canonical_permutation,
)

READ_CPUS = 0.25  # per read task: reads fit in the plan's reserve beside running trials
BYTES_PER_READ_TASK = 128 * 2**20


@dataclass
class SharedWindows:
    """Handles to one challenge's windows in the object store, one object per subject."""

    challenge: int
    refs: dict[str, Any]  # subject -> ObjectRef of {"eeg": array, "meta": frame}

    def window_set(self, subjects: tuple[str, ...]) -> WindowSet:
        """These subjects' windows in canonical order, reading the shared copies in place."""
        import ray

        missing = sorted(set(subjects) - set(self.refs))
        if missing:
            raise KeyError(f"{len(missing)} subjects are not in the shared store: {missing[:3]}")
        names = sorted(set(subjects))
        objects = ray.get([self.refs[s] for s in names])
        metas = [o["meta"][ID_COLUMNS] for o in objects]
        part = np.concatenate([np.full(len(m), i, np.int32) for i, m in enumerate(metas)])
        row = np.concatenate([np.arange(len(m)) for m in metas])
        meta = pd.concat(metas, ignore_index=True)
        order = canonical_permutation(meta)
        return WindowSet.from_parts(
            [o["eeg"] for o in objects],
            meta.iloc[order].reset_index(drop=True),
            part[order],
            row[order],
        )


def share_windows(
    store: str | Path,
    challenge: int,
    progress: bool = False,
    while_reading: Callable[[SharedWindows], Any] | None = None,
) -> SharedWindows:
    """Read every subject of ``challenge`` into the object store, one object each.

    About one read task per CPU of the cluster, each reading every n-th subject: a task
    process costs seconds to start, a small subject's file a fraction of that.
    ``while_reading`` is called with the (not yet filled) handles once the reads are
    submitted, so that work which only needs the handles (starting the fold pool's
    workers) overlaps the reads.
    """
    import ray
    from tqdm.auto import tqdm

    from eegtune.training.data_modes import store_size

    files = store_files(store, challenge)
    read = ray.remote(num_cpus=READ_CPUS, max_retries=3)(read_window_files)
    # A task's process costs about a second to start: no more of them than the data needs.
    size = store_size(store, challenge)
    by_size = math.ceil(size.stored_bytes / BYTES_PER_READ_TASK)
    n_tasks = max(1, min(len(files), int(ray.cluster_resources().get("CPU", 1)), by_size))
    counts, refs = {}, {}
    for share in (files[i::n_tasks] for i in range(n_tasks)):
        returned = read.options(num_returns=2 * len(share)).remote(share, ID_COLUMNS)
        for k, path in enumerate(share):
            subject = storage.name_of(path).removesuffix(".parquet").removeprefix("sub-")
            counts[subject], refs[subject] = returned[k], returned[len(share) + k]
    shared = SharedWindows(challenge, refs)
    if while_reading is not None:
        while_reading(shared)
    pending = list(counts.values())
    with tqdm(total=len(pending), desc="share windows", unit="subj", disable=not progress) as bar:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            bar.update(len(done))
    try:
        rows = dict(zip(counts, ray.get(list(counts.values())), strict=True))
    except ray.exceptions.RayTaskError as exc:  # its message names the file
        raise RuntimeError(f"{store}: could not read a subject's windows: {exc}") from exc
    listed = size.windows
    if sum(rows.values()) != listed:
        raise RuntimeError(
            f"{store}: read {sum(rows.values())} windows, the manifest lists {listed}"
        )
    return shared


class SharedFoldSource(FoldSource):
    """The fold source ``train_func`` sees in a Ray Train worker in memory mode."""

    def __init__(self, windows: SharedWindows, challenge: int, subjects: FoldSubjects) -> None:
        self._windows = windows
        super().__init__(
            challenge,
            subjects,
            fit=windows.window_set(subjects.fit),
            inner_val=windows.window_set(subjects.inner_val),
        )

    def load_test(self) -> WindowSet:
        return self._windows.window_set(self.subjects.test)


def experiment_fold_source(
    windows: SharedWindows | None, store: str, challenge: int, subjects: FoldSubjects
) -> FoldSource:
    """A fold's data on Ray: views of the experiment's shared windows (memory mode), or
    the fold's files streamed every epoch (stream mode, ``windows`` None)."""
    if windows is None:
        from eegtune.training.fold_stream import StreamingFoldSource

        return StreamingFoldSource(store, challenge, subjects)
    return SharedFoldSource(windows, challenge, subjects)


def object_store_used() -> int:
    """Bytes in use in the object stores of all nodes (what Ray's memory summary shows)."""
    import ray
    from ray._private.internal_api import get_memory_info_reply, get_state_from_address

    reply = get_memory_info_reply(get_state_from_address(ray.get_runtime_context().gcs_address))
    return int(reply.store_stats.object_store_bytes_used)
