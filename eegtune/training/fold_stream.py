"""Stream mode: a fold read from its Parquet files batch by batch, never held whole.

For folds larger than memory. Training, every epoch:

1. the fold's files (one per subject) are shuffled with the epoch's seeded generator;
2. ``interleave`` of them are open at once and read round-robin, ``chunk`` windows at a
   time, into a shuffle buffer of ``buffer`` windows;
3. each batch is drawn at random from the buffer, and Challenge 2's random 2 s crops
   are cut as it leaves.

So every batch mixes windows of many subjects although each file holds one, and every
window is seen exactly once per epoch. A thread reads a few chunks ahead, so decoding
overlaps training, in an order that does not depend on timing. Memory stays at the
buffer, the chunks read ahead and one Parquet row group per open file, whatever the
fold's size.

Evaluation reads one subject's file at a time in the canonical (subject, recording,
window index) order, with the scorer's fixed crops and the same batch boundaries as in
memory mode, so inner validation and out-of-fold predictions do not depend on the mode.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from eegtune.data.store import store_files
from eegtune.errors import MissingFileError
from eegtune.training.fold_data import (
    CROP_SAMPLES,
    ID_COLUMNS,
    FoldSource,
    FoldSubjects,
    WindowSet,
    canonical_permutation,
    crop_windows,
    scorer_crops,
)


@dataclass(frozen=True)
class StreamOptions:
    interleave: int = 8  # files open at once: how many subjects a batch can mix
    chunk: int = 32  # windows read from one file before moving to the next
    buffer: int = 2048  # windows in the shuffle buffer

    def heap_bytes(self, window_bytes: int, row_group: int = 256) -> int:
        """What streaming holds at most: the buffer and the chunks read ahead (float32),
        and each open file's decoded row group (Arrow and NumPy copies)."""
        ahead = 2 * self.interleave * self.chunk
        return (self.buffer + self.chunk + ahead) * window_bytes + (
            2 * self.interleave * row_group * window_bytes
        )


DEFAULT_STREAM = StreamOptions()


def _eeg(table: pa.Table | pa.RecordBatch) -> np.ndarray:
    column = table.column("eeg")
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    return column.to_numpy_ndarray()


class FileWindowSet(WindowSet):
    """A set of subjects' windows left in their files: metadata in memory, samples read
    one file at a time when evaluated."""

    def __init__(self, files: list[str]) -> None:
        tables = [(f, pq.read_table(f, columns=ID_COLUMNS).to_pandas()) for f in files]
        tables.sort(key=lambda ft: str(ft[1]["subject"].iloc[0]) if len(ft[1]) else "")
        self.files = [f for f, _ in tables]
        # Within each file, the canonical order of its rows; files follow subject order,
        # so the concatenation is the canonical order of the whole set.
        self._orders = [canonical_permutation(m) for _, m in tables]
        metas = [m.iloc[o] for (_, m), o in zip(tables, self._orders, strict=True)]
        meta = pd.concat(metas, ignore_index=True) if metas else pd.DataFrame(columns=ID_COLUMNS)
        shape = pq.read_schema(files[0]).field("eeg").type.shape if files else (129, CROP_SAMPLES)
        super().__init__(np.zeros((0, *shape), np.float32), meta)
        self._shape = tuple(shape)

    @property
    def n_times(self) -> int:
        return int(self._shape[1])

    def take(self, idx: np.ndarray) -> np.ndarray:
        raise NotImplementedError("a streamed window set is read in order, not by position")

    @property
    def eeg(self) -> np.ndarray:
        return np.concatenate(list(self._file_arrays())) if self.files else self._parts[0]

    def _file_arrays(self) -> Iterator[np.ndarray]:
        for path, order in zip(self.files, self._orders, strict=True):
            x = _eeg(pq.read_table(path, columns=["eeg"]))
            yield np.ascontiguousarray(x[order], dtype=np.float32)

    def eval_batches(self, batch_size: int) -> Iterator[np.ndarray]:
        offsets = scorer_crops(len(self), self.n_times) if self.n_times > CROP_SAMPLES else None
        pending: list[np.ndarray] = []
        done = 0  # windows yielded so far: where the next batch starts
        for x in self._file_arrays():
            pending.append(x)
            while sum(len(p) for p in pending) >= batch_size:
                joined = np.concatenate(pending)
                batch, pending = joined[:batch_size], [joined[batch_size:]]
                yield self._crop_at(batch, offsets, done)
                done += len(batch)
        if pending and sum(len(p) for p in pending):
            batch = np.concatenate(pending)
            yield self._crop_at(batch, offsets, done)

    @staticmethod
    def _crop_at(x: np.ndarray, offsets: np.ndarray | None, start: int) -> np.ndarray:
        """Windows ``start…`` of the set, cut at their fixed evaluation offsets."""
        if offsets is None:
            return x
        return crop_windows(x, offsets[start : start + len(x)], CROP_SAMPLES)


def _file_chunks(path: str, chunk: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    try:
        batches = pq.ParquetFile(path).iter_batches(
            batch_size=chunk, columns=["eeg", "target", "subject"]
        )
        for batch in batches:
            yield (
                _eeg(batch),
                batch.column("target").to_numpy(zero_copy_only=False).astype(np.float32),
                batch.column("subject").to_numpy(zero_copy_only=False),
            )
    except (OSError, ValueError) as exc:  # pyarrow's errors do not always name the file
        raise OSError(f"{path}: cannot stream its windows ({exc})") from exc


def _round_robin(
    files: list[str], options: StreamOptions
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Chunks of ``interleave`` open files in turn, opening the next file as one runs out."""
    queue, readers = list(files), []
    while readers or queue:
        while len(readers) < options.interleave and queue:
            readers.append(_file_chunks(queue.pop(0), options.chunk))
        for reader in list(readers):
            got = next(reader, None)
            if got is None:
                readers.remove(reader)
            else:
                yield got


class _Prefetch:
    """Runs a chunk iterator in a thread (Parquet decoding releases the GIL), a bounded
    number of chunks ahead, so reading overlaps training. Order is unchanged, so what a
    seed streams does not depend on timing."""

    _END = object()

    def __init__(self, chunks: Iterator, depth: int) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(chunks,), daemon=True)
        self._thread.start()

    def _run(self, chunks: Iterator) -> None:
        try:
            for item in chunks:
                if not self._put(item):
                    return
        except Exception as exc:  # re-raised in the consumer, with the file it names
            self._put(exc)
            return
        self._put(self._END)

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator:
        try:
            while (item := self._queue.get()) is not self._END:
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:  # the consumer stopped early (or finished): let the reader go
            self._stop.set()
            self._thread.join()


def stream_batches(
    files: list[str],
    batch_size: int,
    rng: np.random.Generator,
    crop: bool,
    options: StreamOptions = DEFAULT_STREAM,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """One epoch of shuffled (x, y, subject) batches streamed from ``files``."""
    order = [files[i] for i in rng.permutation(len(files))]
    chunks = iter(_Prefetch(_round_robin(order, options), depth=2 * options.interleave))
    cap = max(options.buffer, batch_size)
    xs: np.ndarray | None = None
    ys = np.empty(cap + options.chunk, np.float32)
    ss = np.empty(len(ys), object)
    n, more = 0, True
    while True:
        while more and n < cap:  # fill the buffer
            got = next(chunks, None)
            if got is None:
                more = False
                break
            x, y, s = got
            if xs is None:
                xs = np.empty((len(ys), *x.shape[1:]), np.float32)
            xs[n : n + len(y)], ys[n : n + len(y)], ss[n : n + len(y)] = x, y, s
            n += len(y)
        if n == 0 or xs is None:
            return
        take = min(batch_size, n)  # full batches until the files run out
        picked = np.sort(rng.choice(n, size=take, replace=False))
        x, y, s = xs[picked], ys[picked], ss[picked]
        # Close the holes with the buffer's tail windows that were not drawn.
        tail = np.setdiff1d(np.arange(n - take, n), picked, assume_unique=True)
        holes = picked[picked < n - take]
        xs[holes], ys[holes], ss[holes] = xs[tail], ys[tail], ss[tail]
        n -= take
        if crop and x.shape[2] > CROP_SAMPLES:
            x = crop_windows(
                x, rng.integers(0, x.shape[2] - CROP_SAMPLES + 1, size=len(y)), CROP_SAMPLES
            )
        yield x, y, s


def fold_files(store: str | Path, challenge: int, subjects: tuple[str, ...]) -> list[str]:
    """The Parquet files that hold exactly these subjects' windows (from the manifest)."""
    if not subjects:
        return []
    files = store_files(store, challenge, list(subjects))
    if len(files) != len(set(subjects)):
        raise MissingFileError(f"{store}: some of {len(subjects)} subjects have no windows")
    return files


class StreamingFoldSource(FoldSource):
    """A fold trained and evaluated straight from its Parquet files (stream mode)."""

    data_mode = "stream"

    def __init__(
        self,
        store: str | Path,
        challenge: int,
        subjects: FoldSubjects,
        options: StreamOptions = DEFAULT_STREAM,
    ) -> None:
        self._store, self.options = store, options
        super().__init__(
            challenge,
            subjects,
            fit=FileWindowSet(fold_files(store, challenge, subjects.fit)),
            inner_val=FileWindowSet(fold_files(store, challenge, subjects.inner_val)),
        )

    def train_batches(
        self, batch_size: int, rng: np.random.Generator
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        files = self.fit.files  # type: ignore[attr-defined]
        for x, y, _ in stream_batches(files, batch_size, rng, self.challenge == 2, self.options):
            yield x, y

    def load_test(self) -> WindowSet:
        return FileWindowSet(fold_files(self._store, self.challenge, self.subjects.test))
