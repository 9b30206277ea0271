"""A fold's windows in memory, and the batches the training loop draws from them.

Challenge 2 stores 4 s windows; training takes a fresh random 2 s crop of each window
every epoch, while evaluation uses one fixed random crop per window from a generator
seeded with 42 (the scorer's seed), so every evaluation sees the same crops.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from eegtune.data.store import read_windows

if TYPE_CHECKING:
    import torch

CROP_SAMPLES = 200
SCORER_CROP_SEED = 42
ID_COLUMNS = ["subject", "release", "recording", "window_index", "target"]


class WindowSet:
    """Windows in a fixed order: their metadata, and their samples, read by position.

    The samples sit either in one array, in order, or in several arrays (one per subject,
    as they lie in Ray's shared object store, read-only), with each window's array and
    row. Either way :meth:`take` gathers a batch as a fresh float32 array, so a shared
    copy is never written to and nothing beyond the batch is copied.
    """

    def __init__(self, eeg: np.ndarray, meta: pd.DataFrame) -> None:
        self._parts = [eeg]
        self._part: np.ndarray | None = None  # None: one array, in order
        self._row: np.ndarray | None = None
        self.meta = meta

    @classmethod
    def from_parts(
        cls, parts: list[np.ndarray], meta: pd.DataFrame, part: np.ndarray, row: np.ndarray
    ) -> WindowSet:
        """Window i is ``parts[part[i]][row[i]]``."""
        if not parts:
            return cls(np.zeros((0, 129, CROP_SAMPLES), np.float32), meta)
        ws = cls(parts[0], meta)
        ws._parts, ws._part, ws._row = list(parts), np.asarray(part), np.asarray(row)
        return ws

    def __len__(self) -> int:
        return len(self.meta)

    @property
    def n_times(self) -> int:
        return int(self._parts[0].shape[2])

    def take(self, idx: np.ndarray) -> np.ndarray:
        """The windows at positions ``idx`` as a new (len(idx), C, T) float32 array."""
        if self._part is None or self._row is None:
            x = self._parts[0][idx]
        else:
            part, row = self._part[idx], self._row[idx]
            x = np.empty((len(idx), *self._parts[0].shape[1:]), self._parts[0].dtype)
            for p in np.unique(part):
                sel = part == p
                x[sel] = self._parts[p][row[sel]]
        return x if x.dtype == np.float32 else x.astype(np.float32)

    @property
    def eeg(self) -> np.ndarray:
        """Every window in order as one array (a copy unless the set is one array)."""
        if self._part is None:
            return self._parts[0]
        return self.take(np.arange(len(self)))

    @property
    def target(self) -> np.ndarray:
        return np.array(self.meta["target"], dtype=np.float32)  # writable: torch wraps it

    @property
    def subjects(self) -> set[str]:
        return set(self.meta["subject"])

    def eval_batches(self, batch_size: int) -> Iterator[np.ndarray]:
        """In-order batches with the scorer's fixed crops (a no-op for 2 s windows)."""
        offsets = None
        if self.n_times > CROP_SAMPLES:
            offsets = scorer_crops(len(self), self.n_times)
        for start in range(0, len(self), batch_size):
            x = self.take(np.arange(start, min(start + batch_size, len(self))))
            if offsets is not None:
                x = crop_windows(x, offsets[start : start + batch_size], CROP_SAMPLES)
            yield x


def canonical_order(eeg: np.ndarray, meta: pd.DataFrame) -> WindowSet:
    """Windows sorted by (subject, recording, window index), whatever order files or Ray
    blocks arrived in, so evaluation crops and batches do not depend on the reader."""
    order = canonical_permutation(meta)
    # Arrow hands out read-only buffers, which torch refuses to wrap: the take copies.
    return WindowSet(
        np.ascontiguousarray(eeg[order], dtype=np.float32),
        meta.iloc[order][ID_COLUMNS].reset_index(drop=True),
    )


def canonical_permutation(meta: pd.DataFrame) -> np.ndarray:
    """The order that sorts windows by (subject, recording, window index)."""
    return np.lexsort(
        (
            meta["window_index"].to_numpy(),
            meta["recording"].astype(str).to_numpy(),
            meta["subject"].astype(str).to_numpy(),
        )
    )


def load_window_set(store: str | Path, challenge: int, subjects: tuple[str, ...]) -> WindowSet:
    if not subjects:  # a refit has no inner-validation or held-out subjects
        return WindowSet.from_parts([], pd.DataFrame(columns=ID_COLUMNS), np.zeros(0), np.zeros(0))
    eeg, meta = read_windows(store, challenge, subjects=list(subjects))
    return canonical_order(eeg, meta)


def scorer_crops(n: int, total: int, length: int = CROP_SAMPLES) -> np.ndarray:
    """Fixed crop offsets for evaluation, one per window, from a generator seeded with 42
    (the scorer's seed; not its exact draw sequence)."""
    return np.random.default_rng(SCORER_CROP_SEED).integers(0, total - length + 1, size=n)


def crop_windows(eeg: np.ndarray, offsets: np.ndarray, length: int) -> np.ndarray:
    """Each window cut to ``length`` samples from its own offset."""
    idx = offsets[:, None] + np.arange(length)[None, :]
    return np.take_along_axis(eeg, idx[:, None, :], axis=2)


def train_batches(
    ws: WindowSet, batch_size: int, rng: np.random.Generator, crop: bool
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Shuffled batches; with ``crop`` a fresh random 2 s crop of every window."""
    order = rng.permutation(len(ws))
    y = ws.target
    for start in range(0, len(order), batch_size):
        idx = np.sort(order[start : start + batch_size])
        x = ws.take(idx)
        if crop and x.shape[2] > CROP_SAMPLES:
            x = crop_windows(
                x, rng.integers(0, x.shape[2] - CROP_SAMPLES + 1, size=len(idx)), CROP_SAMPLES
            )
        yield x, y[idx]


def eval_batches(ws: WindowSet, batch_size: int) -> Iterator[np.ndarray]:
    """In-order batches with the scorer's fixed crops (a no-op for 2 s windows)."""
    return ws.eval_batches(batch_size)


def eval_arrays(ws: WindowSet) -> np.ndarray:
    """Every window as the model sees it at evaluation (for closed-form fits)."""
    if not len(ws):
        return np.zeros((0, 129, CROP_SAMPLES), np.float32)
    return np.concatenate(list(eval_batches(ws, 4096)))


@dataclass
class FoldSubjects:
    fit: tuple[str, ...]  # the fold's training subjects minus the inner validation ones
    inner_val: tuple[str, ...]  # early stopping and checkpoint selection only
    test: tuple[str, ...]  # held out: touched once, for the out-of-fold predictions


class FoldSource:
    """What ``train_func`` trains from: a fold's fit and inner-validation windows in
    memory, the same batching everywhere, and the held-out windows on request only.

    Subclasses say where the windows come from (the store here, Ray's shared object
    store or the Parquet files streamed under Ray Train); the subject sets stay the
    single source of truth for what each stage sees.
    """

    data_mode = "memory"  # or "stream": part of a saved training state's fingerprint

    def __init__(
        self, challenge: int, subjects: FoldSubjects, fit: WindowSet, inner_val: WindowSet
    ) -> None:
        self.challenge = challenge
        self.subjects = subjects
        self.fit = fit
        self.inner_val = inner_val

    def fit_targets(self) -> np.ndarray:
        return self.fit.target

    def fit_windows(self) -> WindowSet:
        """All fit windows at once: only closed-form models need them."""
        return self.fit

    def train_batches(
        self, batch_size: int, rng: np.random.Generator
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return train_batches(self.fit, batch_size, rng, crop=self.challenge == 2)

    def attach(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Called once before training; a data-parallel shard combines gradients here."""

    def load_test(self) -> WindowSet:
        """Called once, after training, for the out-of-fold predictions."""
        raise NotImplementedError


class InMemoryFoldSource(FoldSource):
    """A fold's subject sets read from the store's Parquet files into memory."""

    def __init__(self, store: str | Path, challenge: int, subjects: FoldSubjects) -> None:
        super().__init__(
            challenge,
            subjects,
            fit=load_window_set(store, challenge, subjects.fit),
            inner_val=load_window_set(store, challenge, subjects.inner_val),
        )
        self._store = store

    def load_test(self) -> WindowSet:
        return load_window_set(self._store, self.challenge, self.subjects.test)


FoldSourceFactory = Callable[[str | Path, int, FoldSubjects], FoldSource]
_factory: contextvars.ContextVar[FoldSourceFactory] = contextvars.ContextVar(
    "fold_source", default=InMemoryFoldSource
)


def open_fold_source(store: str | Path, challenge: int, subjects: FoldSubjects):
    """The active fold source: in memory by default; ``eegtune cv`` and Ray Train swap in
    stream mode's or the shared object store's."""
    return _factory.get()(store, challenge, subjects)


@contextlib.contextmanager
def using_fold_source(factory: FoldSourceFactory) -> Iterator[None]:
    token = _factory.set(factory)
    try:
        yield
    finally:
        _factory.reset(token)
