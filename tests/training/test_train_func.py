import shutil

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from eegtune.data.store import read_windows
from eegtune.training.config import FoldJob, TrainConfig, make_config
from eegtune.training.fold_data import load_window_set
from eegtune.training.folds import store_subjects
from eegtune.training.reporting import LocalReporter, reporting_to
from eegtune.training.train_func import fold_subjects, load_checkpoint, predict, train_func

TINY_TCN = {"n_filters": 8, "n_blocks": 2}


def run(store, out, challenge=1, model="softargmax_tcn", params=TINY_TCN, seed=0, fold=0, **hp):
    job = FoldJob(store=str(store), challenge=challenge, out_dir=str(out), fold=fold, n_folds=3)
    cfg = TrainConfig(model=model, model_params=dict(params), seed=seed, max_epochs=2, **hp)
    reporter = LocalReporter()
    with reporting_to(reporter):
        metrics = train_func(make_config(job, cfg))
    return metrics, reporter, job, cfg


def oof(out, fold=0):
    return pd.read_parquet(out / f"fold{fold}" / "oof.parquet")


def test_reports_every_epoch_and_writes_oof_and_checkpoint(prepared_store, tmp_path):
    metrics, reporter, _, _ = run(prepared_store, tmp_path)
    epochs = [m for m in reporter.history if "train_loss" in m]
    assert [m["epoch"] for m in epochs] == [0, 1]
    assert all(np.isfinite(m["train_loss"]) for m in epochs)
    assert epochs[0]["lr"] > epochs[1]["lr"] >= 0  # the cosine schedule decays
    assert reporter.history[-1]["done"] and reporter.checkpoints == [tmp_path / "fold0"]
    pred = oof(tmp_path)
    assert set(pred["subject"]) == set(metrics["subjects"]["test"])
    assert {"subject", "window_index", "target", "prediction", "fold"} <= set(pred.columns)
    assert len(pred) == metrics["n_test_windows"] > 0

    # The checkpoint loads with weights_only=True and reproduces the OOF predictions.
    model, ckpt = load_checkpoint(tmp_path / "fold0" / "checkpoint.pt")
    assert ckpt["model_config"]["name"] == "softargmax_tcn"
    test = load_window_set(prepared_store, 1, tuple(metrics["subjects"]["test"]))
    np.testing.assert_allclose(predict(model, test), pred["prediction"], rtol=1e-5, atol=1e-6)


def test_same_seed_same_predictions_other_seed_differs(prepared_store, tmp_path):
    for name, seed in (("a", 4), ("b", 4), ("c", 5)):
        run(prepared_store, tmp_path / name, seed=seed)
    a, b = oof(tmp_path / "a"), oof(tmp_path / "b")
    pd.testing.assert_frame_equal(a, b, check_exact=True)  # same rows, bit-identical

    # The seed also moves the folds, so compare the models on one common set of windows.
    everyone = tuple(sorted(store_subjects(prepared_store, 1)["subject"]))
    common = load_window_set(prepared_store, 1, everyone)
    pred = {
        name: predict(load_checkpoint(tmp_path / name / "fold0" / "checkpoint.pt")[0], common)
        for name in "abc"
    }
    np.testing.assert_array_equal(pred["a"], pred["b"])
    # Well beyond float noise: another initialisation and data order, another model.
    assert np.abs(pred["a"] - pred["c"]).max() > 1e-3


def _poison(store, tmp_path, subjects):
    """A copy of the store whose windows for ``subjects`` are all NaN."""
    copy = tmp_path / "poisoned"
    shutil.copytree(store, copy)
    for path in (copy / "challenge1").glob("*/*.parquet"):
        if path.stem.removeprefix("sub-") not in subjects:
            continue
        table = pq.read_table(path)
        eeg = np.full((table.num_rows, 129, 200), np.nan, dtype=np.float32)
        col = table.schema.get_field_index("eeg")
        table = table.set_column(col, "eeg", pa.FixedShapeTensorArray.from_numpy_ndarray(eeg))
        pq.write_table(table, path)
    return copy


def test_held_out_subjects_never_reach_training_or_early_stopping(prepared_store, tmp_path):
    job = FoldJob(store=str(prepared_store), challenge=1, out_dir=str(tmp_path), fold=0, n_folds=3)
    subjects = fold_subjects(job, TrainConfig(seed=0))
    assert not set(subjects.test) & (set(subjects.fit) | set(subjects.inner_val))
    poisoned = _poison(prepared_store, tmp_path, set(subjects.test))
    _, reporter, _, _ = run(poisoned, tmp_path / "run")
    # Training and early stopping saw only finite data...
    assert all(np.isfinite(m["train_loss"]) for m in reporter.history if "train_loss" in m)
    assert all(np.isfinite(m["inner_val_rmse"]) for m in reporter.history if "epoch" in m)
    # ...while the held-out windows really were poisoned: their predictions are NaN.
    assert oof(tmp_path / "run")["prediction"].isna().all()


def test_the_poison_check_would_catch_a_leak(prepared_store, tmp_path):
    job = FoldJob(store=str(prepared_store), challenge=1, out_dir=str(tmp_path), fold=0, n_folds=3)
    subjects = fold_subjects(job, TrainConfig(seed=0))
    poisoned = _poison(prepared_store, tmp_path, {subjects.inner_val[0]})
    _, reporter, _, _ = run(poisoned, tmp_path / "run")
    assert not all(np.isfinite(m["inner_val_rmse"]) for m in reporter.history if "epoch" in m)


@pytest.mark.parametrize(
    ("model", "params"),
    [("dense_attention", {"d_model": 16, "n_heads": 2, "n_layers": 1}), ("ridge_bandpower", {})],
)
def test_challenge2_predicts_every_stored_window_once_with_its_subjects_target(
    prepared_store, tmp_path, model, params
):
    # The crops themselves are checked in test_fold_data.py; here: one finite prediction
    # per stored 4 s window of the held-out subjects, each against the stored target.
    metrics, reporter, _, _ = run(prepared_store, tmp_path, challenge=2, model=model, params=params)
    pred = oof(tmp_path)
    assert np.isfinite(pred["prediction"]).all()
    keys = ["subject", "recording", "window_index"]
    _, stored = read_windows(prepared_store, 2, subjects=list(metrics["subjects"]["test"]))
    expected = stored.sort_values(keys).reset_index(drop=True)
    got = pred.sort_values(keys).reset_index(drop=True)
    assert not got.duplicated(keys).any()
    assert len(got) == len(expected) == metrics["n_test_windows"] > 0
    np.testing.assert_array_equal(got[keys].astype(str), expected[keys].astype(str))
    np.testing.assert_array_equal(got["target"], expected["target"])
    # Challenge 2's target belongs to the subject: every window of one shares it.
    assert pred.groupby("subject")["target"].nunique().eq(1).all()
    assert reporter.history[-1]["done"]


def test_softargmax_refuses_challenge2(prepared_store, tmp_path):
    with pytest.raises(ValueError, match="does not support challenge 2"):
        run(prepared_store, tmp_path, challenge=2)


def test_inference_is_deterministic_at_batch_size_one(prepared_store, tmp_path):
    run(prepared_store, tmp_path)
    model, _ = load_checkpoint(tmp_path / "fold0" / "checkpoint.pt")
    x = torch.randn(3, 129, 200) * 20
    with torch.inference_mode():
        batched = model(x)
        single = torch.cat([model(x[i : i + 1]) for i in range(3)])
    assert batched.shape == (3, 1)
    torch.testing.assert_close(batched, single, rtol=1e-5, atol=1e-5)
