"""A run's folder: what one trial (or one ``eegtune cv`` run, or one finalist) leaves.

::

    RUN/
      config.json          every training setting, defaults included (a retrain reads it)
      oof_scores.json      pooled and per-fold out-of-fold NRMSE, written once at the end
      fold<k>/
        oof.parquet        the held-out subjects' predictions
        checkpoint.pt      the fold's model (loaded with weights_only=True)
        metrics.json       the fold's figures and subjects

Kept apart from :mod:`eegtune.training.train_func` so that readers (a trial's driver,
the ensembles, the report) need neither torch nor the training code to read them.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pandas as pd

from eegtune import storage
from eegtune.errors import MissingFileError
from eegtune.metrics import nrmse, nrmse_or_nan

CONFIG = "config.json"
OOF_SCORES = "oof_scores.json"
OOF = "oof.parquet"
CHECKPOINT = "checkpoint.pt"
FOLD_METRICS = "metrics.json"

# What a member of an ensemble needs from a run's folder, relative to it.
_MEMBER_FILE = re.compile(
    rf"^({re.escape(CONFIG)}|{re.escape(OOF_SCORES)}|fold\d+/"
    rf"({re.escape(OOF)}|{re.escape(CHECKPOINT)}|{re.escape(FOLD_METRICS)}))$"
)


def fold_dir(run: str | Path, fold: int) -> str:
    return storage.join(run, f"fold{fold}")


def member_file(relative: str) -> bool:
    """Whether a file of a run's folder (relative path) is one an ensemble member needs."""
    return bool(_MEMBER_FILE.match(relative))


def oof_frame(run_dir: str | Path, n_folds: int) -> pd.DataFrame:
    """The out-of-fold predictions of folds 0…n_folds-1 (never leftovers of another run)."""
    files = [storage.join(fold_dir(run_dir, k), OOF) for k in range(n_folds)]
    missing = [f for f in files if not storage.exists(f)]
    if missing:
        raise MissingFileError(f"{run_dir}: missing out-of-fold predictions {missing[:2]}")
    return pd.concat([storage.read_parquet(f) for f in files], ignore_index=True)


def oof_scores(oof: pd.DataFrame) -> dict[str, Any]:
    """Pooled NRMSE over every row, and per fold (NaN for a fold whose targets are equal)."""
    per_fold = [nrmse_or_nan(g["target"], g["prediction"]) for _, g in oof.groupby("fold")]
    return {
        "oof_nrmse": nrmse(oof["target"], oof["prediction"]),
        "fold_oof_nrmse": per_fold,
        "n_rows": len(oof),
    }


def write_oof_scores(run_dir: str | Path, n_folds: int) -> dict[str, Any]:
    """Score the run's out-of-fold rows once, when its last fold has ended, and keep the
    figures beside them for the results table, the ensembles and the report."""
    scores = {**oof_scores(oof_frame(run_dir, n_folds)), "n_folds": n_folds}
    storage.write_text(storage.join(run_dir, OOF_SCORES), json.dumps(scores, indent=1))
    return scores


def read_oof_scores(run_dir: str | Path, n_folds: int) -> dict[str, Any] | None:
    """The run's saved figures; None while any fold's predictions are missing (a trial ASHA
    stopped). A run from before the figures were saved is scored from its Parquet files,
    and nothing is written."""
    files = [storage.join(fold_dir(run_dir, k), OOF) for k in range(n_folds)]
    if not all(storage.exists(f) for f in files):
        return None
    saved = storage.join(run_dir, OOF_SCORES)
    if storage.exists(saved):
        scores = json.loads(storage.read_text(saved))
        if scores.get("n_folds") == n_folds:
            return {**scores, "fold_oof_nrmse": [_nan(x) for x in scores["fold_oof_nrmse"]]}
    return {**oof_scores(oof_frame(run_dir, n_folds)), "n_folds": n_folds}


def _nan(x: float | None) -> float:
    return math.nan if x is None else float(x)
