"""Memory mode's default loader: a Ray Data dataset of the store's windows, materialized.

Each Parquet file is read in a ``map_batches`` task (0.25 CPU, so the reads fit in the
plan's reserve while the fold pool starts), in the files' order; the dataset's blocks
(Arrow tables) are the shared objects, and their row counts with the manifest say where
each subject lies. A fold reads read-only, zero-copy views of the blocks it needs, one per
Parquet row group, because joining them would copy shared memory into the worker.

``ray.data.read_parquet`` itself is not used: in Ray 2.60 it lists (and its V1 reader
samples) the files in 1-CPU tasks, which never start while the pool holds all but the
reserve. BENCHMARKS.md ("Memory mode's loader") has the figures against the task loader
in :mod:`.shared_windows`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from eegtune.distributed.shared_windows import (
    READ_CPUS,
    SharedWindows,
    StoredFile,
    check_known,
    in_canonical_order,
)
from eegtune.training.fold_data import ID_COLUMNS, WindowSet


@dataclass(frozen=True)
class BlockIndex:
    """Where each subject's windows lie among a materialized dataset's blocks."""

    blocks: list[Any]  # ObjectRefs of Arrow tables: ID_COLUMNS and "eeg"
    spans: dict[str, list[tuple[int, int, int]]]  # subject -> (block, first row, end row)


@dataclass
class DatasetBlocks(SharedWindows):
    """The ``"ray_data"`` loader's handles: a materialized Ray Data dataset's blocks.

    ``index`` is an ObjectRef of the :class:`BlockIndex`, which exists before the read
    ends (see :class:`_Handoff`), so that the fold pool can start during the read.
    """

    challenge: int
    index: Any  # ObjectRef of a BlockIndex
    _resolved: BlockIndex | None = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        return {"challenge": self.challenge, "index": self.index, "_resolved": None}

    def resolved(self) -> BlockIndex:
        import ray

        if self._resolved is None:
            self._resolved = ray.get(self.index)
        return self._resolved

    def window_set(self, subjects: tuple[str, ...]) -> WindowSet:
        import ray

        index = self.resolved()
        check_known(subjects, index.spans)
        spans = [(s, *span) for s in sorted(set(subjects)) for span in index.spans[s]]
        used = sorted({b for _, b, _, _ in spans})
        tables = dict(zip(used, ray.get([index.blocks[b] for b in used]), strict=True))
        # A block's tensor column comes in chunks (Parquet row groups); each chunk is one
        # part, since joining them would copy the shared memory into this process.
        parts: list[np.ndarray] = []
        first_part, chunk_starts = {}, {}
        for b, table in tables.items():
            chunks = table.column("eeg").chunks
            first_part[b] = len(parts)
            chunk_starts[b] = np.cumsum([0, *(len(c) for c in chunks)])[:-1]
            parts.extend(c.to_numpy_ndarray() for c in chunks)
        metas, part, row = [], [], []
        for subject, b, start, stop in spans:
            meta = tables[b].slice(start, stop - start).select(ID_COLUMNS).to_pandas()
            # The index was inferred from the blocks' order (see _spans): check it here,
            # where the metadata are read anyway.
            if not (meta["subject"] == subject).all():
                raise RuntimeError(f"rows {start}:{stop} of block {b} are not {subject}'s")
            rows = np.arange(start, stop)
            chunk = np.searchsorted(chunk_starts[b], rows, side="right") - 1
            part.append(first_part[b] + chunk)
            row.append(rows - chunk_starts[b][chunk])
            metas.append(meta)
        return in_canonical_order(parts, metas, part, row)


def share_by_ray_data(
    files: list[StoredFile],
    challenge: int,
    n_tasks: int,
    progress: bool,
    while_reading: Callable[[SharedWindows], Any] | None,
    store: str,
) -> tuple[DatasetBlocks, int]:
    """A dataset of the files, read one file per ``map_batches`` task and materialized
    in the files' order; the blocks' row counts then say where each subject lies."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    # A materialized dataset's block refs exist only once it is read; the handoff actor
    # gives the handles an ObjectRef of the index now and fills it then. On this node,
    # the index's copy is lost only with the driver, which owns everything here anyway.
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    handoff = ray.remote(num_cpus=0, scheduling_strategy=here)(_Handoff).remote()
    shared = DatasetBlocks(challenge, handoff.get.remote())
    if while_reading is not None:
        while_reading(shared)
    items = [{"path": f.path} for f in files]
    try:
        dataset = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            _read_file_table,
            batch_size=1,
            batch_format="pyarrow",
            num_cpus=READ_CPUS,
            compute=ray.data.TaskPoolStrategy(size=n_tasks),
        )
        # In order, a subject's rows need no task per block to find them (measured: 4 s
        # for 59 blocks on 2 CPUs); window_set checks each subject's rows all the same.
        dataset.context.execution_options.preserve_order = True
        with _ray_data_quiet(not progress):
            dataset.context.enable_progress_bars = progress
            dataset.context.print_on_execution_start = progress
            bundles = list(dataset.materialize().iter_internal_ref_bundles())
    except (ray.exceptions.RayError, ray.data.exceptions.UserCodeException) as exc:
        ray.kill(handoff)
        raise RuntimeError(f"{store}: could not read a subject's windows: {exc}") from exc
    blocks = [entry for bundle in bundles for entry in bundle.blocks]
    block_rows = [int(e.metadata.num_rows or 0) for e in blocks]
    if sum(block_rows) != sum(f.rows for f in files):  # no index from rows that do not add up
        ray.kill(handoff)
        return shared, sum(block_rows)
    ray.get(handoff.put.remote(BlockIndex([e.ref for e in blocks], _spans(files, block_rows))))
    shared._resolved = ray.get(shared.index)
    ray.kill(handoff)  # the index is the driver's object now; its value outlives the actor
    return shared, sum(block_rows)


def _spans(files: list[StoredFile], block_rows: list[int]) -> dict[str, list[tuple[int, int, int]]]:
    """Each subject's (block, first row, end row) runs, for blocks that hold the files'
    rows in the files' order (a file may span blocks; a block may hold several files)."""
    spans: dict[str, list[tuple[int, int, int]]] = {f.subject: [] for f in files}
    block_start = np.cumsum([0, *block_rows])
    start = 0
    for f in files:
        stop = start + f.rows
        for b in range(int(np.searchsorted(block_start, start, side="right")) - 1, len(block_rows)):
            lo, hi = max(start, block_start[b]), min(stop, block_start[b + 1])
            if lo >= stop:
                break
            if hi > lo:
                spans[f.subject].append((b, int(lo - block_start[b]), int(hi - block_start[b])))
        start = stop
    return spans


@contextlib.contextmanager
def _ray_data_quiet(quiet: bool) -> Iterator[None]:
    """Ray Data's per-dataset lines (plan, progress, timing, "progress bars disabled")
    kept off a quiet run; its errors still show."""
    log = logging.getLogger("ray.data")
    level = log.level
    if quiet:
        log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


class _Handoff:
    """An ObjectRef for a value computed later: ``get`` returns once ``put`` is called."""

    def __init__(self) -> None:
        self._ready = asyncio.Event()
        self._value: Any = None

    async def get(self) -> Any:
        await self._ready.wait()
        return self._value

    async def put(self, value: Any) -> None:
        self._value = value
        self._ready.set()


def _read_file_table(batch: pa.Table) -> pa.Table:
    """One file's windows as an Arrow table (the ``map_batches`` function)."""
    (path,) = batch.column("path").to_pylist()
    try:
        return pq.read_table(path, columns=[*ID_COLUMNS, "eeg"])
    except Exception as exc:  # the driver's error must name the file
        raise OSError(f"{path}: cannot read its windows ({exc})") from exc
