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


@dataclass
class WindowSet:
    eeg: np.ndarray  # (n, 129, T) float32
    meta: pd.DataFrame  # ID_COLUMNS at least

    def __len__(self) -> int:
        return len(self.meta)

    @property
    def target(self) -> np.ndarray:
        return np.array(self.meta["target"], dtype=np.float32)  # writable: torch wraps it

    @property
    def subjects(self) -> set[str]:
        return set(self.meta["subject"])


def canonical_order(eeg: np.ndarray, meta: pd.DataFrame) -> WindowSet:
    """Windows sorted by (subject, recording, window index), whatever order files or Ray
    blocks arrived in, so evaluation crops and batches do not depend on the reader."""
    order = np.lexsort(
        (
            meta["window_index"].to_numpy(),
            meta["recording"].astype(str).to_numpy(),
            meta["subject"].astype(str).to_numpy(),
        )
    )
    # Arrow hands out read-only buffers, which torch refuses to wrap: the take copies.
    return WindowSet(
        np.ascontiguousarray(eeg[order], dtype=np.float32),
        meta.iloc[order][ID_COLUMNS].reset_index(drop=True),
    )


def load_window_set(store: str | Path, challenge: int, subjects: tuple[str, ...]) -> WindowSet:
    eeg, meta = read_windows(Path(store), challenge, subjects=list(subjects))
    return canonical_order(eeg, meta)


def scorer_crops(n: int, total: int, length: int = CROP_SAMPLES) -> np.ndarray:
    """Fixed crop offsets for evaluation, one per window, from a generator seeded with 42
    (the scorer's seed; not its exact draw sequence)."""
    return np.random.default_rng(SCORER_CROP_SEED).integers(0, total - length + 1, size=n)


def _crop(eeg: np.ndarray, offsets: np.ndarray, length: int) -> np.ndarray:
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
        x = ws.eeg[idx]
        if crop and x.shape[2] > CROP_SAMPLES:
            x = _crop(
                x, rng.integers(0, x.shape[2] - CROP_SAMPLES + 1, size=len(idx)), CROP_SAMPLES
            )
        yield x, y[idx]


def eval_batches(ws: WindowSet, batch_size: int) -> Iterator[np.ndarray]:
    """In-order batches with the scorer's fixed crops (a no-op for 2 s windows)."""
    offsets = None
    if ws.eeg.shape[2] > CROP_SAMPLES:
        offsets = scorer_crops(len(ws), ws.eeg.shape[2])
    for start in range(0, len(ws), batch_size):
        x = ws.eeg[start : start + batch_size]
        if offsets is not None:
            x = _crop(x, offsets[start : start + batch_size], CROP_SAMPLES)
        yield x


def eval_arrays(ws: WindowSet) -> np.ndarray:
    """Every window as the model sees it at evaluation (for closed-form fits)."""
    return np.concatenate(list(eval_batches(ws, 4096))) if len(ws) else ws.eeg[:, :, :CROP_SAMPLES]


@dataclass
class FoldSubjects:
    fit: tuple[str, ...]  # the fold's training subjects minus the inner validation ones
    inner_val: tuple[str, ...]  # early stopping and checkpoint selection only
    test: tuple[str, ...]  # held out: touched once, for the out-of-fold predictions


class FoldSource:
    """What ``train_func`` trains from: a fold's fit and inner-validation windows in
    memory, the same batching everywhere, and the held-out windows on request only.

    Subclasses say where the windows come from (the store here, a Ray Data stream under
    Ray Train); the subject sets stay the single source of truth for what each stage sees.
    """

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
    """The active fold source: in memory by default, a Ray Data stream under Ray Train."""
    return _factory.get()(store, challenge, subjects)


@contextlib.contextmanager
def using_fold_source(factory: FoldSourceFactory) -> Iterator[None]:
    token = _factory.set(factory)
    try:
        yield
    finally:
        _factory.reset(token)
