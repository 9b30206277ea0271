import json

import numpy as np
import pytest

from eegtune.cli import main
from eegtune.metrics import nrmse
from eegtune.training.config import TrainConfig
from eegtune.training.cross_validate import run_cv
from eegtune.training.folds import store_subjects


def test_every_subject_is_predicted_once_and_pooled(prepared_store, tmp_path):
    result = run_cv(prepared_store, 1, TrainConfig(model="ridge_bandpower"), tmp_path, n_folds=3)
    subjects = store_subjects(prepared_store, 1)
    assert sorted(result.oof["subject"].unique()) == sorted(subjects["subject"])
    assert result.oof.groupby("subject")["fold"].nunique().eq(1).all()
    assert len(result.oof) == subjects["n_windows"].sum()
    assert result.pooled_nrmse == pytest.approx(
        nrmse(result.oof["target"], result.oof["prediction"])
    )
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["pooled_oof_nrmse"] == pytest.approx(result.pooled_nrmse)
    assert "pooled OOF NRMSE" in result.table()


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
