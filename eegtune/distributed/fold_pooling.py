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

from eegtune.metrics import pooled_nrmse

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


def final_report(
    bests: list[dict[str, Any] | None],
    finals: list[dict[str, Any]],
    run_dir: str | Path,
    max_epochs: int,
) -> dict[str, Any]:
    """A trial's last report, once every fold has ended: the pooled inner-validation NRMSE
    of the epochs the folds kept (what the searcher ranks by), and the pooled out-of-fold
    NRMSE, scored here once and saved beside the predictions (:mod:`.run_files`).

    It comes one step after the last epoch, so ASHA's rungs (all before it) never stop a
    trial whose folds are writing their out-of-fold predictions.
    """
    from eegtune.training.run_files import write_oof_scores

    val = (
        pooled_nrmse([{k: b[f"inner_val_{k}"] for k in SUM_KEYS} for b in bests])  # type: ignore[index]
        if all(b is not None for b in bests)
        else float("nan")
    )
    scores = write_oof_scores(run_dir, len(finals))
    return {
        "epoch": max_epochs + 1,
        VAL_METRIC: val,
        "oof_nrmse": scores["oof_nrmse"],
        "fold_oof_nrmse": scores["fold_oof_nrmse"],
        "best_epochs": [f.get("best_epoch") for f in finals],
        "resumed_at_epochs": [f.get("resumed_at_epoch") for f in finals],
        # Not "done": Tune reads that key as "stop this trial" and would kill it
        # mid-teardown, leaking its placement group.
        "final": True,
    }
