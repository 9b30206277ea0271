"""Ray Data: a fold's windows read from the Parquet store and streamed to its worker.

The trial driver reads only the files of each fold's subjects (one file per subject, so
selecting subjects is selecting files) and materialises them into Ray's object store,
never into its own memory. Each fold worker streams its fold's blocks in once and keeps
them: every epoch it then draws a full seeded permutation and Challenge 2's random 2 s
crops exactly as the in-process path does, so a fold trains the same on Ray as in
``eegtune cv``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from eegtune.data.store import store_files
from eegtune.training.fold_data import (
    CROP_SAMPLES,
    ID_COLUMNS,
    FoldSource,
    FoldSubjects,
    WindowSet,
    canonical_order,
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
        # A quarter CPU per read task, so reads fit in the plan's reserve even while
        # other trials' fold workers hold the rest of the cluster.
        ds = ray.data.read_parquet(files, num_cpus=0.25)
        out[dataset_key(fold, split)] = ds.materialize()
    return out


def _to_window_set(batches: list[dict[str, np.ndarray]]) -> WindowSet:
    if not batches:
        empty = np.zeros((0, 129, CROP_SAMPLES), np.float32)
        return WindowSet(empty, pd.DataFrame(columns=ID_COLUMNS))
    eeg = np.concatenate([b["eeg"] for b in batches])
    meta = pd.DataFrame({c: np.concatenate([b[c] for b in batches]) for c in ID_COLUMNS})
    return canonical_order(eeg, meta)


class RayDataFoldSource(FoldSource):
    """The fold source ``train_func`` sees inside a Ray Train worker.

    The fit windows stream in once and stay in this worker: a per-epoch Ray Data pass
    through a local shuffle buffer mixes only 1-2 subjects per batch (blocks are per
    subject), which trains differently from the in-process full shuffle.
    """

    def __init__(self, fold: int, challenge: int, subjects: FoldSubjects) -> None:
        import ray.train

        self.fold = fold
        self._shard = {s: ray.train.get_dataset_shard(dataset_key(fold, s)) for s in SPLITS}
        super().__init__(
            challenge, subjects, fit=self._load("fit"), inner_val=self._load("inner_val")
        )

    def _load(self, split: str) -> WindowSet:
        batches = self._shard[split].iter_batches(batch_size=1024, batch_format="numpy")
        return _to_window_set([{c: b[c] for c in (*ID_COLUMNS, "eeg")} for b in batches])

    def load_test(self) -> WindowSet:
        return self._load("test")
