"""Ray Data: a fold's windows read from the Parquet store and streamed to its worker.

The trial driver reads only the files of each fold's subjects (one file per subject, so
selecting subjects is selecting files) and materialises them into Ray's object store,
never into its own memory. Each fold worker then pulls its fold's blocks: shuffled per
epoch through a local shuffle buffer seeded from the run's seed, with Challenge 2's
random 2 s crops cut in the worker as the batches arrive.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from eegtune.data.store import output_path
from eegtune.training.fold_data import (
    CROP_SAMPLES,
    ID_COLUMNS,
    FoldSubjects,
    WindowSet,
    _crop,
)
from eegtune.training.folds import store_subjects

SPLITS = ("fit", "inner_val", "test")


def dataset_key(fold: int, split: str) -> str:
    return f"fold{fold}_{split}"


def subject_files(store: str | Path, challenge: int, subjects: tuple[str, ...]) -> list[str]:
    """The Parquet files that hold exactly these subjects' windows."""
    table = store_subjects(store, challenge).set_index("subject")
    missing = sorted(set(subjects) - set(table.index))
    if missing:
        raise FileNotFoundError(f"{store}: no challenge {challenge} windows for {missing[:3]}")
    return [str(output_path(Path(store), challenge, table.loc[s, "release"], s)) for s in subjects]


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
        return WindowSet(
            np.zeros((0, 129, CROP_SAMPLES), np.float32), pd.DataFrame(columns=ID_COLUMNS)
        )
    eeg = np.concatenate([b["eeg"] for b in batches]).astype(np.float32)
    meta = pd.DataFrame({c: np.concatenate([b[c] for b in batches]) for c in ID_COLUMNS})
    # Blocks can arrive in any order; evaluation must not depend on it.
    order = np.lexsort((meta["window_index"].to_numpy(), meta["recording"].to_numpy()))
    return WindowSet(eeg[order], meta.iloc[order].reset_index(drop=True))


class RayDataFoldSource:
    """The fold source ``train_func`` sees inside a Ray Train worker (same methods as the
    in-memory one)."""

    def __init__(self, fold: int, challenge: int, subjects: FoldSubjects) -> None:
        import ray.train

        self.fold = fold
        self.challenge = challenge
        self.subjects = subjects
        self._shard = {s: ray.train.get_dataset_shard(dataset_key(fold, s)) for s in SPLITS}
        self._fit_targets: np.ndarray | None = None
        self.inner_val = self._load("inner_val")

    def _iter(
        self, split: str, batch_size: int, columns: tuple[str, ...] | None = None, **kwargs
    ) -> Iterator[dict[str, np.ndarray]]:
        for batch in self._shard[split].iter_batches(
            batch_size=batch_size, batch_format="numpy", **kwargs
        ):
            yield batch if columns is None else {c: batch[c] for c in columns}

    def _load(self, split: str) -> WindowSet:
        return _to_window_set(list(self._iter(split, 1024, columns=(*ID_COLUMNS, "eeg"))))

    def fit_targets(self) -> np.ndarray:
        if self._fit_targets is None:
            batches = self._iter("fit", 4096, columns=("target",))
            self._fit_targets = np.concatenate([b["target"] for b in batches]).astype(np.float32)
        return self._fit_targets

    def fit_windows(self) -> WindowSet:
        return self._load("fit")

    def train_batches(
        self, batch_size: int, rng: np.random.Generator
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for batch in self._iter(
            "fit",
            batch_size,
            columns=("eeg", "target"),
            local_shuffle_buffer_size=max(4 * batch_size, 256),
            local_shuffle_seed=int(rng.integers(2**31)),
        ):
            x = batch["eeg"].astype(np.float32, copy=False)
            if self.challenge == 2 and x.shape[2] > CROP_SAMPLES:
                starts = rng.integers(0, x.shape[2] - CROP_SAMPLES + 1, size=len(x))
                x = _crop(x, starts, CROP_SAMPLES)
            yield np.ascontiguousarray(x), batch["target"].astype(np.float32)

    def load_test(self) -> WindowSet:
        return self._load("test")
