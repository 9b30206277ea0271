"""Ray Data: a fold's windows read from the Parquet store and streamed to its worker.

The trial driver reads only the files of each fold's subjects (one file per subject, so
selecting subjects is selecting files) and materialises them into Ray's object store,
never into its own memory. Each fold worker streams its fold's blocks in once and keeps
them: every epoch it then draws a full seeded permutation and Challenge 2's random 2 s
crops exactly as the in-process path does, so a fold trains the same on Ray as in
``eegtune cv``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from eegtune.data.store import store_files
from eegtune.training.fold_data import (
    CROP_SAMPLES,
    ID_COLUMNS,
    FoldSubjects,
    WindowSet,
    canonical_order,
    train_batches,
)

SPLITS = ("fit", "inner_val", "test")


def dataset_key(fold: int, split: str) -> str:
    return f"fold{fold}_{split}"


def subject_files(store: str | Path, challenge: int, subjects: tuple[str, ...]) -> list[str]:
    """The Parquet files that hold exactly these subjects' windows (from the manifest)."""
    files = store_files(store, challenge, list(subjects))
    if len(files) != len(set(subjects)):
        raise FileNotFoundError(f"{store}: some of {len(subjects)} subjects have no windows")
    return [str(f) for f in files]


def fold_datasets(
    store: str | Path, challenge: int, fold: int, subjects: FoldSubjects
) -> dict[str, object]:
    """Materialised Ray datasets for one fold's fit, inner-validation and test subjects."""
    import ray.data

    out = {}
    for split in SPLITS:
        files = subject_files(store, challenge, getattr(subjects, split))
        # Materialising here, before the fold workers take their CPUs, is what keeps the
        # read tasks from starving behind them (a streaming read would deadlock on 2 CPUs).
        out[dataset_key(fold, split)] = ray.data.read_parquet(files).materialize()
    return out


def _to_window_set(batches: list[dict[str, np.ndarray]]) -> WindowSet:
    if not batches:
        empty = np.zeros((0, 129, CROP_SAMPLES), np.float32)
        return WindowSet(empty, pd.DataFrame(columns=ID_COLUMNS))
    eeg = np.concatenate([b["eeg"] for b in batches])
    meta = pd.DataFrame({c: np.concatenate([b[c] for b in batches]) for c in ID_COLUMNS})
    return canonical_order(eeg, meta)


class RayDataFoldSource:
    """The fold source ``train_func`` sees inside a Ray Train worker (same methods as the
    in-memory one)."""

    def __init__(self, fold: int, challenge: int, subjects: FoldSubjects) -> None:
        import ray.train

        self.fold = fold
        self.challenge = challenge
        self.subjects = subjects
        self._shard = {s: ray.train.get_dataset_shard(dataset_key(fold, s)) for s in SPLITS}
        # The fit windows stream in once and stay in this worker: a per-epoch Ray Data
        # pass through a local shuffle buffer mixes only 1-2 subjects per batch (blocks
        # are per subject), which trains differently from the in-process full shuffle.
        self.fit = self._load("fit")
        self.inner_val = self._load("inner_val")

    def _load(self, split: str) -> WindowSet:
        batches = self._shard[split].iter_batches(batch_size=1024, batch_format="numpy")
        return _to_window_set([{c: b[c] for c in (*ID_COLUMNS, "eeg")} for b in batches])

    def fit_targets(self) -> np.ndarray:
        return self.fit.target

    def fit_windows(self) -> WindowSet:
        return self.fit

    def train_batches(
        self, batch_size: int, rng: np.random.Generator
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return train_batches(self.fit, batch_size, rng, crop=self.challenge == 2)

    def load_test(self) -> WindowSet:
        return self._load("test")
