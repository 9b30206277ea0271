"""One trial's figures from its folds' figures: pooled exactly, never averaged.

The searcher and ASHA see a trial's **pooled inner-validation NRMSE**, computed from the
folds' error sums (``n``, ``sse``, ``sum_y``, ``sum_y2``) as if all the folds' validation
windows were one set; the results table shows the pooled out-of-fold NRMSE the same way.
Used by both ways a trial's folds run (the fold pool's trial driver and Ray Train's
reporters), and light to import: a trial's driver needs neither torch nor Ray Train.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from eegtune.metrics import nrmse, pooled_nrmse

VAL_METRIC = "val_nrmse"  # what ASHA and the searcher act on: inner validation, never OOF
SUM_KEYS = ("n", "sse", "sum_y", "sum_y2")


def aggregate_epoch(per_fold: list[dict[str, Any]]) -> dict[str, Any]:
    """One report from all folds' epoch reports (the Tune-visible metrics)."""
    parts = [{k: m[f"inner_val_{k}"] for k in SUM_KEYS} for m in per_fold]
    return {
        "epoch": max(m["epoch"] for m in per_fold) + 1,  # epochs done, for ASHA's time_attr
        VAL_METRIC: pooled_nrmse(parts),
        "train_loss": float(np.mean([m["train_loss"] for m in per_fold])),
        "fold_val_rmse": [m["inner_val_rmse"] for m in per_fold],
        "folds_stopped": sum(bool(m.get("stopped")) for m in per_fold),
        # The slowest fold's compute this epoch: what the trial's wall time is set against.
        "epoch_seconds": max(float(m.get("epoch_seconds", 0.0)) for m in per_fold),
    }


def pooled_oof(run_dir: str | Path, n_folds: int) -> float:
    """Pooled out-of-fold NRMSE over folds 0…n_folds-1 under ``run_dir``."""
    from eegtune.training.oof_files import oof_frame

    oof = oof_frame(run_dir, n_folds)
    return nrmse(oof["target"], oof["prediction"])
