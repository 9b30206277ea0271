"""Memory mode on Ray: the store's windows once per node, in Ray's shared object store.

At the start of an experiment the subjects' Parquet files are read, a few at a time, and
the windows (at the store's dtype) become objects in the object store of the node that
read them: the store is sharded over the cluster's nodes. Every fold worker of every
trial then ``ray.get``s the objects its fold needs. On the worker's node that is a
zero-copy, read-only view of shared memory; an object read on another node is pulled
once into this node's store and shared from there. So the windows are read from disk
once per experiment, held once per node, and never copied per fold or per trial: a
batch is the only copy a worker makes (:meth:`WindowSet.take`).

Two loaders make those objects; ``BENCHMARKS.md`` ("Memory mode's loader: Ray Data
against Ray tasks") has the figures that chose the default:

- ``"ray_data"`` (default, :mod:`.dataset_windows`): a Ray Data dataset of the files,
  materialized; its blocks (Arrow tables, one or more per subject) are the objects.
- ``"tasks"`` (here): about one Ray task per CPU, each reading a share of the subjects;
  each subject's windows become one object (a NumPy array and its metadata frame).

The objects belong to the process that ran :func:`share_windows` (the ``eegtune tune``
driver): they live as long as the experiment, and Ray re-runs a lost object's read task
if a node dies.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from eegtune import storage
from eegtune.data.store import load_manifest, read_window_files, store_files
from eegtune.training.fold_data import (
    ID_COLUMNS,
    FoldSource,
    FoldSubjects,
    WindowSet,
    canonical_permutation,
)

READ_CPUS = 0.25  # per read task: reads fit in the plan's reserve beside running trials
BYTES_PER_READ_TASK = 128 * 2**20

Loader = Literal["tasks", "ray_data"]
LOADERS: tuple[Loader, ...] = ("tasks", "ray_data")
# Ray Data loads as fast (1.02-1.04x the tasks' time) at 9-28% less peak memory: the
# tasks hold their whole share of subjects until they return (BENCHMARKS.md).
DEFAULT_LOADER: Loader = "ray_data"


class SharedWindows(ABC):
    """Handles to one challenge's windows in the object store; picklable, so that every
    fold worker gets them."""

    challenge: int

    @abstractmethod
    def window_set(self, subjects: tuple[str, ...]) -> WindowSet:
        """These subjects' windows in canonical order, reading the shared copies in place."""


@dataclass
class SubjectObjects(SharedWindows):
    """The ``"tasks"`` loader's handles: one object per subject."""

    challenge: int
    refs: dict[str, Any]  # subject -> ObjectRef of {"eeg": array, "meta": frame}

    def window_set(self, subjects: tuple[str, ...]) -> WindowSet:
        import ray

        check_known(subjects, self.refs)
        names = sorted(set(subjects))
        objects = ray.get([self.refs[s] for s in names])
        metas = [o["meta"][ID_COLUMNS] for o in objects]
        part = [np.full(len(m), i, np.int64) for i, m in enumerate(metas)]
        row = [np.arange(len(m)) for m in metas]
        return in_canonical_order([o["eeg"] for o in objects], metas, part, row)


def check_known(subjects: tuple[str, ...], known: dict[str, Any]) -> None:
    missing = sorted(set(subjects) - set(known))
    if missing:
        raise KeyError(f"{len(missing)} subjects are not in the shared store: {missing[:3]}")


def in_canonical_order(
    parts: list[np.ndarray],
    metas: list[pd.DataFrame],
    part: list[np.ndarray],
    row: list[np.ndarray],
) -> WindowSet:
    """Window i of ``metas`` (concatenated) is ``parts[part[i]][row[i]]``; sorted the way
    ``eegtune cv`` sorts them, whatever order the objects came in."""
    if not metas:
        return WindowSet.from_parts([], pd.DataFrame(columns=ID_COLUMNS), [], [])
    meta = pd.concat(metas, ignore_index=True)
    order = canonical_permutation(meta)
    return WindowSet.from_parts(
        parts,
        meta.iloc[order].reset_index(drop=True),
        np.concatenate(part)[order],
        np.concatenate(row)[order],
    )


def share_windows(
    store: str | Path,
    challenge: int,
    progress: bool = False,
    while_reading: Callable[[SharedWindows], Any] | None = None,
    loader: Loader = DEFAULT_LOADER,
) -> SharedWindows:
    """Read every subject of ``challenge`` into the object store.

    ``while_reading`` is called with the (not yet filled) handles once the reads are
    under way, so that work which only needs the handles (starting the fold pool's
    workers) overlaps the reads.
    """
    from eegtune.training.data_modes import store_size

    if loader not in LOADERS:
        raise ValueError(f"loader must be one of {LOADERS}, not {loader!r}")
    files = _stored_files(store, challenge)
    size = store_size(store, challenge)
    n_tasks = _read_tasks(len(files), size.stored_bytes)
    if loader == "tasks":
        share = _share_by_tasks
    else:
        from eegtune.distributed.dataset_windows import share_by_ray_data as share
    shared, rows = share(files, challenge, n_tasks, progress, while_reading, str(store))
    if rows != size.windows:
        raise RuntimeError(f"{store}: read {rows} windows, the manifest lists {size.windows}")
    return shared


@dataclass(frozen=True)
class StoredFile:
    path: str
    subject: str
    rows: int  # windows, as the manifest lists them


def _stored_files(store: str | Path, challenge: int) -> list[StoredFile]:
    """The challenge's files in :func:`store_files`' order, with their manifest records."""
    paths = store_files(store, challenge)
    manifest = load_manifest(store) or {"files": []}
    listed = {storage.join(store, f["path"]): f for f in manifest["files"]}
    return [StoredFile(p, listed[p]["subject"], int(listed[p]["rows"])) for p in paths]


def _read_tasks(n_files: int, stored_bytes: int) -> int:
    """About one read task per CPU of the cluster: a task process costs about a second to
    start, a small subject's file a fraction of that, so no more than the data needs."""
    import ray

    by_size = math.ceil(stored_bytes / BYTES_PER_READ_TASK)
    return max(1, min(n_files, int(ray.cluster_resources().get("CPU", 1)), by_size))


def _share_by_tasks(
    files: list[StoredFile],
    challenge: int,
    n_tasks: int,
    progress: bool,
    while_reading: Callable[[SharedWindows], Any] | None,
    store: str,
) -> tuple[SubjectObjects, int]:
    """Each task reads every n-th subject and returns each one's windows as its own
    object, so the handles exist as soon as the tasks are submitted."""
    import ray
    from tqdm.auto import tqdm

    read = ray.remote(num_cpus=READ_CPUS, max_retries=3)(read_window_files)
    counts, refs = {}, {}
    for share in (files[i::n_tasks] for i in range(n_tasks)):
        paths = [f.path for f in share]
        returned = read.options(num_returns=2 * len(share)).remote(paths, ID_COLUMNS)
        for k, f in enumerate(share):
            counts[f.subject], refs[f.subject] = returned[k], returned[len(share) + k]
    shared = SubjectObjects(challenge, refs)
    if while_reading is not None:
        while_reading(shared)
    pending = list(counts.values())
    with tqdm(total=len(pending), desc="share windows", unit="subj", disable=not progress) as bar:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            bar.update(len(done))
    try:
        rows = sum(ray.get(list(counts.values())))
    except ray.exceptions.RayTaskError as exc:  # its message names the file
        raise RuntimeError(f"{store}: could not read a subject's windows: {exc}") from exc
    return shared, rows


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
