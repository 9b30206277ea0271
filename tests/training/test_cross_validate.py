import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch

from eegtune.cli import main
from eegtune.training.config import TrainConfig
from eegtune.training.cross_validate import run_cv
from eegtune.training.folds import store_subjects
from eegtune.training.training_state import STATE_FILE


def population_nrmse(y: np.ndarray, p: np.ndarray) -> float:
    """The challenge metric written out: RMSE over the population (ddof=0) std of y."""
    y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    return float(np.sqrt(np.mean((y - p) ** 2)) / np.sqrt(np.mean((y - y.mean()) ** 2)))


def test_every_subject_is_predicted_once_and_pooled(prepared_store, tmp_path):
    result = run_cv(prepared_store, 1, TrainConfig(model="ridge_bandpower"), tmp_path, n_folds=3)
    subjects = store_subjects(prepared_store, 1)
    oof = result.oof
    assert sorted(oof["subject"].unique()) == sorted(subjects["subject"])
    assert oof.groupby("subject")["fold"].nunique().eq(1).all()
    assert len(oof) == subjects["n_windows"].sum()
    assert not oof.duplicated(["subject", "recording", "window_index"]).any()

    # Pooled over every out-of-fold window at once, not averaged over folds.
    y, p = oof["target"].to_numpy(), oof["prediction"].to_numpy()
    pooled = population_nrmse(y, p)
    per_fold = [population_nrmse(y[oof["fold"] == k], p[oof["fold"] == k]) for k in range(3)]
    assert abs(pooled - np.mean(per_fold)) > 1e-6  # the two readings really differ here
    assert result.pooled_nrmse == pytest.approx(pooled, rel=1e-9)

    # The mean predictor: each fold predicts the mean target of every window it trained on,
    # i.e. of every other fold's windows (each subject is held out exactly once).
    base = np.empty(len(oof))
    for k in range(3):
        held = (oof["fold"] == k).to_numpy()
        base[held] = y[~held].astype(np.float64).mean()
    assert result.mean_baseline_nrmse == pytest.approx(population_nrmse(y, base), rel=1e-6)
    for fold in result.folds:
        held = (oof["fold"] == fold["fold"]).to_numpy()
        expected = population_nrmse(y[held], base[held])
        assert fold["mean_baseline_nrmse"] == pytest.approx(expected, rel=1e-6)

    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["pooled_oof_nrmse"] == pytest.approx(pooled, rel=1e-9)
    assert summary["mean_baseline_nrmse"] == pytest.approx(population_nrmse(y, base), rel=1e-6)
    assert f"pooled OOF NRMSE {pooled:.4f}" in result.table()


def test_mean_model_matches_the_mean_baseline(prepared_store, tmp_path):
    # The "mean" model predicts its fit subjects' mean; the baseline uses all training
    # subjects (fit + inner validation), so the two are close but not identical.
    result = run_cv(prepared_store, 1, TrainConfig(model="mean"), tmp_path, n_folds=3)
    assert result.mean_baseline_nrmse == pytest.approx(1.0, abs=0.05)
    assert result.pooled_nrmse == pytest.approx(result.mean_baseline_nrmse, abs=0.05)


@pytest.mark.slow
def test_cli_cv_and_audit(prepared_store, tmp_path, capsys):
    assert main(["audit", str(prepared_store), "--by-release"]) == 0
    assert "no leaks" in capsys.readouterr().out
    code = main(
        [
            "cv",
            "--store",
            str(prepared_store),
            "--challenge",
            "2",
            "--model",
            "sparse_attention",
            "--folds",
            "2",
            "--smoke-test",
            "--quiet",
            "--out",
            str(tmp_path / "run"),
            "--set",
            "model.d_model=16",
            "--set",
            "model.n_layers=1",
            "--set",
            "model.head_ratio=0.2",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and "pooled OOF NRMSE" in out and "mean predictor" in out
    ckpts = sorted((tmp_path / "run").glob("fold*/checkpoint.pt"))
    assert len(ckpts) == 2
    assert np.isfinite(
        json.loads((tmp_path / "run" / "summary.json").read_text())["pooled_oof_nrmse"]
    )


def test_cli_cv_reports_a_missing_store(tmp_path, capsys):
    code = main(
        [
            "cv",
            "--store",
            str(tmp_path),
            "--challenge",
            "1",
            "--model",
            "mean",
            "--out",
            str(tmp_path / "r"),
        ]
    )
    assert code == 2 and "no manifest.json" in capsys.readouterr().err


def test_a_reused_run_folder_pools_only_this_runs_folds(prepared_store, tmp_path):
    run_cv(prepared_store, 1, TrainConfig(model="mean"), tmp_path, n_folds=3)
    again = run_cv(prepared_store, 1, TrainConfig(model="mean"), tmp_path, n_folds=2)
    assert sorted(again.oof["fold"].unique()) == [0, 1]
    assert len(again.oof) == store_subjects(prepared_store, 1)["n_windows"].sum()
    assert np.isfinite(again.mean_baseline_nrmse)


# 12 epochs rather than a handful: an epoch of this tiny model can take 50 ms, and the
# kill has to land while fold 1 is still training, even on a busy machine.
RESUME_EPOCHS = 12
# One torch thread: two threads on a shared two-core machine run several times slower.
# Every run gets the same, so "bit-identical" still compares like with like.
CV_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def cv_command(store, out) -> list[str]:
    return [
        sys.executable,
        "-m",
        "eegtune.cli",
        "cv",
        "--store",
        str(store),
        "--challenge",
        "1",
        "--model",
        "softargmax_tcn",
        "--folds",
        "2",
        "--set",
        f"max_epochs={RESUME_EPOCHS}",
        "--set",
        "patience=100",
        "--set",
        "model.n_filters=8",
        "--set",
        "model.n_blocks=2",
        "--out",
        str(out),
        "--quiet",
    ]


def run_to_completion(store, out, log) -> None:
    with open(log, "w") as f:
        code = subprocess.run(
            cv_command(store, out), stdout=f, stderr=subprocess.STDOUT, timeout=120, env=CV_ENV
        ).returncode
    assert code == 0, f"eegtune cv exited {code}:\n{log.read_text()}"


def epochs_done(state_file) -> int:
    # Saved with an atomic replace, so the file is never seen half-written.
    return torch.load(state_file, map_location="cpu", weights_only=True)["epochs_done"]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_cli_cv_resumes_a_killed_run_to_the_uninterrupted_result(prepared_store, tmp_path):
    killed, log = tmp_path / "killed", tmp_path / "killed.log"
    fold1_state = killed / "fold1" / STATE_FILE
    with open(log, "w") as f:
        proc = subprocess.Popen(
            cv_command(prepared_store, killed), stdout=f, stderr=subprocess.STDOUT, env=CV_ENV
        )
    try:
        # Fold 1 saves its first state after its first epoch, and only once fold 0 is done.
        deadline = time.monotonic() + 180
        while not fold1_state.exists() and proc.poll() is None:
            assert time.monotonic() < deadline, f"no fold 1 state in time:\n{log.read_text()}"
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"the run ended by itself:\n{log.read_text()}"
    at_kill = epochs_done(fold1_state)
    assert (killed / "fold0" / "oof.parquet").exists()
    assert 1 <= at_kill < RESUME_EPOCHS and not (killed / "fold1" / "oof.parquet").exists(), (
        f"the kill landed after fold 1 finished ({at_kill} epochs): it tested nothing"
    )

    run_to_completion(prepared_store, killed, tmp_path / "resumed.log")
    fresh = tmp_path / "fresh"
    run_to_completion(prepared_store, fresh, tmp_path / "fresh.log")

    resumed_at = [
        json.loads((killed / f"fold{k}" / "metrics.json").read_text())["resumed_at_epoch"]
        for k in (0, 1)
    ]
    assert resumed_at == [RESUME_EPOCHS, at_kill]  # fold 0 not retrained, fold 1 picked up
    fresh_metrics = [json.loads((fresh / f"fold{k}" / "metrics.json").read_text()) for k in (0, 1)]
    assert [m["resumed_at_epoch"] for m in fresh_metrics] == [0, 0]

    for k in (0, 1):
        got = pd.read_parquet(killed / f"fold{k}" / "oof.parquet")
        want = pd.read_parquet(fresh / f"fold{k}" / "oof.parquet")
        pd.testing.assert_frame_equal(got, want, check_exact=True)
        got_w = torch.load(killed / f"fold{k}" / "checkpoint.pt", weights_only=True)["state_dict"]
        want_w = torch.load(fresh / f"fold{k}" / "checkpoint.pt", weights_only=True)["state_dict"]
        assert got_w.keys() == want_w.keys()
        for name in want_w:
            assert torch.equal(got_w[name], want_w[name]), f"fold {k}: {name} differs"
