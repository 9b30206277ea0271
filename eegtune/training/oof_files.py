"""Where a fold's out-of-fold predictions live, and reading a run's back.

Kept apart from :mod:`eegtune.training.train_func` so that readers (a trial's driver,
the ensembles) need neither torch nor the training code to read them.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from eegtune import storage

OOF = "oof.parquet"  # under each fold's folder


def oof_frame(run_dir: str | Path, n_folds: int) -> pd.DataFrame:
    """The out-of-fold predictions of folds 0…n_folds-1 (never leftovers of another run)."""
    files = [storage.join(run_dir, f"fold{k}", OOF) for k in range(n_folds)]
    missing = [f for f in files if not storage.exists(f)]
    if missing:
        raise FileNotFoundError(f"{run_dir}: missing out-of-fold predictions {missing[:2]}")
    return pd.concat([storage.read_parquet(f) for f in files], ignore_index=True)
