"""A trial's reports are what its folds computed, and a fold trains on Ray as in `eegtune cv`.

Every expected number here is recomputed from the folds' own outputs (their checkpoints
and out-of-fold files) with a plain numpy NRMSE, never with eegtune's metric code.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from eegtune.distributed.resources import plan_resources
from eegtune.distributed.train import run_folds
from eegtune.training.config import FoldJob, TrainConfig
from eegtune.training.cross_validate import run_cv
from eegtune.training.fold_data import load_window_set
from eegtune.training.train_func import build_model, load_checkpoint, predict

pytestmark = [pytest.mark.slow, pytest.mark.ray]

EPOCHS = 2
# patience above max_epochs: both epochs train, so the last epoch's report and the final
# one (the epochs each fold kept) are two different computations.
HP = TrainConfig(
    model="softargmax_tcn",
    model_params={"n_filters": 8, "n_blocks": 2, "dropout": 0.1},
    max_epochs=EPOCHS,
    patience=100,
    seed=3,
)
ORDER = ["subject", "recording", "window_index"]


def _nrmse(y: np.ndarray, p: np.ndarray) -> float:
    """The challenge metric, written out: RMSE over the population std of the targets."""
    y, p = np.asarray(y, np.float64), np.asarray(p, np.float64)
    return float(np.sqrt(np.mean((y - p) ** 2)) / np.sqrt(np.mean((y - y.mean()) ** 2)))


def _inner_val(store: Path, fold_dir: Path):
    subjects = json.loads((fold_dir / "metrics.json").read_text())["subjects"]
    return load_window_set(store, 1, tuple(subjects["inner_val"]))


def _pooled_inner_val(store: Path, run: Path, weights: list[dict]) -> float:
    """Pool the folds' inner-validation errors by hand, with the given weights per fold."""
    ys, ps = [], []
    for k, state in enumerate(weights):
        model = build_model(HP)
        model.load_state_dict(state)
        ws = _inner_val(store, run / f"fold{k}")
        ys.append(ws.target)
        ps.append(predict(model, ws))
    return _nrmse(np.concatenate(ys), np.concatenate(ps))


@pytest.mark.timeout(480)
def test_pooled_reports_match_the_folds_and_ray_folds_match_cv(prepared_store, tmp_path, local_ray):
    run = tmp_path / "ray"
    job = FoldJob(store=str(prepared_store), challenge=1, out_dir=str(run), n_folds=2)
    result = run_folds(
        job, HP, plan_resources(2, n_folds=2), storage_path=str(tmp_path / "train"), name="pool"
    )
    assert result.error is None
    by_epoch = {int(m["epoch"]): (ckpt, m) for ckpt, m in result.best_checkpoints}
    assert sorted(by_epoch) == [EPOCHS, EPOCHS + 1]  # the last epoch, then the final report

    # The last epoch's val_nrmse: from each fold's weights as they stood after that epoch
    # (the training state its checkpoint carries), pooled over both folds' inner subjects.
    ckpt, last = by_epoch[EPOCHS]
    with ckpt.as_directory() as folder:
        states = [
            torch.load(Path(folder) / f"fold{k}.pt", weights_only=True)["model"] for k in (0, 1)
        ]
    assert last["val_nrmse"] == pytest.approx(
        _pooled_inner_val(prepared_store, run, states), rel=1e-5
    )

    # The final val_nrmse: the epochs each fold kept, i.e. the weights in its checkpoint.pt.
    _, final = by_epoch[EPOCHS + 1]
    kept = [load_checkpoint(run / f"fold{k}" / "checkpoint.pt")[0].state_dict() for k in (0, 1)]
    assert final["val_nrmse"] == pytest.approx(
        _pooled_inner_val(prepared_store, run, kept), rel=1e-5
    )

    # The final pooled OOF NRMSE and the per-fold ones: from the OOF Parquet files.
    oof = pd.concat(pd.read_parquet(run / f"fold{k}" / "oof.parquet") for k in (0, 1))
    assert final["oof_nrmse"] == pytest.approx(_nrmse(oof["target"], oof["prediction"]), rel=1e-6)
    per_fold = [_nrmse(g["target"], g["prediction"]) for _, g in oof.groupby("fold")]
    assert final["fold_oof_nrmse"] == pytest.approx(per_fold, rel=1e-6)
    # The two reports pool different weights, so the check above could tell them apart.
    assert last["val_nrmse"] != final["val_nrmse"] or all(
        json.loads((run / f"fold{k}" / "metrics.json").read_text())["best_epoch"] == EPOCHS - 1
        for k in (0, 1)
    )

    # The same folds, config and seed through `eegtune cv` in this process, with the one
    # thread each Ray worker has: bit for bit the same out-of-fold predictions, because
    # memory mode reads the shared copy in the order and batches cv reads its own.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cv = run_cv(prepared_store, 1, HP, tmp_path / "cv", n_folds=2, data_mode="memory")
    finally:
        torch.set_num_threads(threads)
    mine = oof.sort_values(ORDER).reset_index(drop=True)
    theirs = cv.oof.sort_values(ORDER).reset_index(drop=True)
    pd.testing.assert_frame_equal(mine[[*ORDER, "fold"]], theirs[[*ORDER, "fold"]])
    np.testing.assert_array_equal(mine["prediction"], theirs["prediction"])

    # Stream mode on Ray: the same folds and subjects, every window predicted exactly once.
    stream_run = tmp_path / "stream"
    streamed = run_folds(
        dataclasses.replace(job, out_dir=str(stream_run)),
        HP,
        plan_resources(2, n_folds=2),
        storage_path=str(tmp_path / "train"),
        name="stream",
        data_mode="stream",
    )
    assert streamed.error is None and np.isfinite(streamed.metrics["oof_nrmse"])
    other = pd.concat(pd.read_parquet(stream_run / f"fold{k}" / "oof.parquet") for k in (0, 1))
    other = other.sort_values(ORDER).reset_index(drop=True)
    pd.testing.assert_frame_equal(other[[*ORDER, "fold"]], mine[[*ORDER, "fold"]])
    for k in (0, 1):
        subjects = [
            json.loads((r / f"fold{k}" / "metrics.json").read_text())["subjects"]
            for r in (run, stream_run)
        ]
        assert subjects[0] == subjects[1]
