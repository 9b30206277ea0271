"""A trial's pooled reports, from fold events as the pool delivers them: out of order,
repeated after a resume, ended early, or failed."""

from __future__ import annotations

import math

import pytest

from eegtune.distributed.fold_reporter import VAL_METRIC
from eegtune.distributed.trial_driver import EpochPooler
from eegtune.metrics import pooled_nrmse


def epoch(fold: int, e: int, rmse: float, n: float = 10.0) -> dict:
    """An epoch event whose error sums give ``rmse`` over ``n`` windows of targets 0..."""
    sums = {"n": n, "sse": rmse**2 * n, "sum_y": n, "sum_y2": 2 * n}  # var(y) = 1
    metrics = {"epoch": e, "fold": fold, "train_loss": 1.0 + e, "inner_val_rmse": rmse,
               "epoch_seconds": 0.5, **{f"inner_val_{k}": v for k, v in sums.items()}}  # fmt: skip
    return {"fold": fold, "epoch_metrics": metrics}


def final(fold: int) -> dict:
    return {"fold": fold, "final": {"oof_nrmse": 0.9, "best_epoch": 0, "resumed_at_epoch": 0}}


def test_an_epoch_is_reported_once_every_fold_has_finished_it():
    pooler = EpochPooler(2)
    pooler.add(epoch(0, 0, 0.5))
    pooler.add(epoch(0, 1, 0.4))  # fold 0 runs ahead: nothing waits for fold 1
    assert pooler.due() == []
    pooler.add(epoch(1, 0, 0.7))
    (first,) = pooler.due()
    assert first["epoch"] == 1  # epochs done, for ASHA's time attribute
    assert first[VAL_METRIC] == pytest.approx(math.sqrt((0.25 + 0.49) / 2))
    assert first["fold_val_rmse"] == [0.5, 0.7] and first["folds_stopped"] == 0
    assert pooler.due() == []  # reported once
    pooler.add(epoch(1, 1, 0.6))
    (second,) = pooler.due()
    assert second["epoch"] == 2 and second["fold_val_rmse"] == [0.4, 0.6]


def test_a_fold_that_stopped_early_counts_with_its_last_epoch():
    pooler = EpochPooler(2)
    for e in range(3):
        pooler.add(epoch(1, e, 0.6 - 0.1 * e))
    pooler.add(epoch(0, 0, 0.5))
    assert len(pooler.due()) == 1
    pooler.add(final(0))  # fold 0 stopped after its first epoch
    reports = pooler.due()
    assert [r["epoch"] for r in reports] == [2, 3]
    assert all(r["folds_stopped"] == 1 and r["fold_val_rmse"][0] == 0.5 for r in reports)
    pooler.add(final(1))
    assert pooler.due() == [] and pooler.finished  # nothing past the last real epoch


def test_epochs_repeated_after_a_resume_replace_the_earlier_ones():
    pooler = EpochPooler(1)
    pooler.add(epoch(0, 0, 0.9))
    pooler.add(epoch(0, 1, 0.8))
    pooler.add(epoch(0, 1, 0.7))  # the fold resumed from a save before epoch 1, ran it again
    pooler.add(final(0))
    assert [r["fold_val_rmse"] for r in pooler.due()] == [[0.9], [0.7]]


def test_the_final_report_pools_the_epochs_the_folds_kept_and_saves_the_oof_scores(tmp_path):
    import json

    import numpy as np
    import pandas as pd

    from eegtune.metrics import nrmse
    from eegtune.training.run_files import OOF, OOF_SCORES, read_oof_scores

    rng = np.random.default_rng(0)
    frames = []
    for k in (0, 1):
        y = rng.normal(size=6)
        frame = pd.DataFrame({"target": y, "prediction": y + rng.normal(size=6), "fold": k})
        (tmp_path / f"fold{k}").mkdir()
        frame.to_parquet(tmp_path / f"fold{k}" / OOF)
        frames.append(frame)
    pooler = EpochPooler(2)
    for e, (a, b) in enumerate([(0.5, 0.9), (0.3, 0.8), (0.4, 0.85)]):
        pooler.add(epoch(0, e, a))
        pooler.add(epoch(1, e, b))
    pooler.add(final(0))
    pooler.add(final(1))
    report = pooler.final_report(str(tmp_path), max_epochs=3)
    kept = [epoch(0, 1, 0.3)["epoch_metrics"], epoch(1, 1, 0.8)["epoch_metrics"]]
    sums = [{k: m[f"inner_val_{k}"] for k in ("n", "sse", "sum_y", "sum_y2")} for m in kept]
    assert report[VAL_METRIC] == pytest.approx(pooled_nrmse(sums))
    assert report["epoch"] == 4 and report["final"] is True
    both = pd.concat(frames)
    assert report["oof_nrmse"] == pytest.approx(nrmse(both["target"], both["prediction"]))
    per_fold = [nrmse(f["target"], f["prediction"]) for f in frames]
    assert report["fold_oof_nrmse"] == pytest.approx(per_fold, rel=1e-12)
    # Scored once, kept beside the predictions; what the results table reads back.
    saved = json.loads((tmp_path / OOF_SCORES).read_text())
    assert saved["oof_nrmse"] == report["oof_nrmse"] and saved["n_rows"] == 12
    saved["oof_nrmse"] = 0.123  # read from the scores file, not recomputed
    (tmp_path / OOF_SCORES).write_text(json.dumps(saved))
    assert read_oof_scores(tmp_path, 2)["oof_nrmse"] == 0.123
    assert read_oof_scores(tmp_path, 3) is None  # a fold count the run did not have
    (tmp_path / "fold0" / OOF).unlink()  # what ASHA leaves: no predictions, no figures
    assert read_oof_scores(tmp_path, 2) is None


def test_a_failed_fold_fails_the_trial_with_its_reason():
    pooler = EpochPooler(2)
    with pytest.raises(RuntimeError, match="fold 1 failed: loss is NaN"):
        pooler.add({"fold": 1, "error": "loss is NaN"})
