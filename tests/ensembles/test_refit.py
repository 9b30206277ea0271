"""Refit members: each shipped member as one model trained on every subject for the epochs
its folds kept, scored by its fold models, and predicting inside the zip."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from eegtune.ensembles import EnsembleRequest, build_ensemble, format_report, load_ensemble
from eegtune.ensembles.candidates import experiment_candidates, open_experiment
from eegtune.ensembles.refit import chosen_epochs, refit_member
from eegtune.training.folds import store_subjects
from eegtune.training.reporting import LocalReporter
from eegtune.training.train_func import load_checkpoint, refit_dir
from eegtune.training.training_state import STATE_FILE

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_chosen_epochs_is_the_median_of_the_epochs_the_folds_kept(tmp_path):
    for k, best in enumerate((3, 7, 4)):
        (tmp_path / f"fold{k}").mkdir()
        (tmp_path / f"fold{k}" / "metrics.json").write_text(json.dumps({"best_epoch": best}))
    assert chosen_epochs(tmp_path, 3) == 5  # epochs 4, 8, 5 trained: the median is 5


def test_a_refit_ensemble_ships_one_model_per_member_trained_on_every_subject(
    finished_experiment, prepared_store, tmp_path
):
    exp = tmp_path / "c1"
    shutil.copytree(finished_experiment, exp)
    folds = build_ensemble(
        EnsembleRequest((str(exp),), 1, str(tmp_path / "folds"), method="mean", top_k=2)
    )
    refit = build_ensemble(
        EnsembleRequest((str(exp),), 1, str(tmp_path / "refit"), method="mean", top_k=2, refit=True)
    )
    # Chosen and scored exactly as the fold-model ensemble: the same members and figures.
    assert refit.description["scores"] == folds.description["scores"]
    assert [m["trial_dir"] for m in refit.description["members"]] == [
        m["trial_dir"] for m in folds.description["members"]
    ]
    assert refit.description["refit"] is True
    assert "a refit model has no held-out rows" in format_report(refit)
    windows = int(store_subjects(prepared_store, 1)["n_windows"].sum())
    for member in refit.description["members"]:
        _, ckpt = load_checkpoint(Path(refit_dir(member["trial_dir"])) / "checkpoint.pt")
        # Every subject's windows, none held out, for the epochs the folds kept.
        assert ckpt["metrics"]["n_fit_windows"] == windows
        assert ckpt["metrics"]["refit_epochs"] == chosen_epochs(Path(member["trial_dir"]), 2)
    described = json.loads((tmp_path / "refit" / "ensemble.json").read_text())
    assert all(len(entry) == 1 for entry in described["fold_models"])  # one model a member
    x = torch.randn(3, 129, 200, generator=torch.Generator().manual_seed(0)) * 10
    pred = load_ensemble(tmp_path / "refit")(x)
    assert pred.shape == (3, 1) and torch.isfinite(pred).all()
    # A refit model is a new model, not a copy of a fold model.
    assert not torch.allclose(pred, load_ensemble(tmp_path / "folds")(x))

    # A rerun reuses the refit models instead of training them again.
    stamps = {m["trial_dir"]: (Path(refit_dir(m["trial_dir"])) / "checkpoint.pt").stat().st_mtime_ns
              for m in refit.description["members"]}  # fmt: skip
    build_ensemble(
        EnsembleRequest(
            (str(exp),), 1, str(tmp_path / "refit2"), method="mean", top_k=2, refit=True
        )
    )
    for trial_dir, stamp in stamps.items():
        assert (Path(refit_dir(trial_dir)) / "checkpoint.pt").stat().st_mtime_ns == stamp


def test_an_interrupted_refit_resumes_after_its_last_finished_epoch(
    finished_experiment, tmp_path, monkeypatch
):
    shutil.copytree(finished_experiment, tmp_path / "c1")
    exp = open_experiment(tmp_path / "c1")
    cand = experiment_candidates(exp)[0]
    # Three epochs to refit (the shared experiment trained one): its folds "kept" epoch 3.
    config = json.loads((cand.trial_dir / "config.json").read_text())
    (cand.trial_dir / "config.json").write_text(json.dumps({**config, "max_epochs": 3}))
    for k in range(cand.n_folds):
        metrics = cand.trial_dir / f"fold{k}" / "metrics.json"
        metrics.write_text(json.dumps({**json.loads(metrics.read_text()), "best_epoch": 2}))
    report = LocalReporter.report

    def killed_after_epoch_1(self, metrics, checkpoint_dir=None, state=None):
        report(self, metrics, checkpoint_dir, state)
        if metrics.get("epoch") == 1:
            raise RuntimeError("killed")

    monkeypatch.setattr(LocalReporter, "report", killed_after_epoch_1)
    with pytest.raises(RuntimeError, match="killed"):
        refit_member(cand, exp)
    refit = Path(refit_dir(cand.trial_dir))
    assert (refit / STATE_FILE).exists() and not (refit / "checkpoint.pt").exists()
    monkeypatch.undo()
    _, ckpt = load_checkpoint(refit_member(cand, exp))
    assert ckpt["metrics"]["resumed_at_epoch"] == 2 and ckpt["metrics"]["refit_epochs"] == 3
    assert not (refit / STATE_FILE).exists()  # the model is saved: nothing left to resume


def test_a_refit_member_predicts_inside_the_zip(finished_experiment, tmp_path):
    from eegtune.ensembles.predictor import write_ensemble
    from eegtune.ensembles.scoring import run_submission, unpack_submission
    from eegtune.ensembles.submission import export_submission

    exp = tmp_path / "c1"
    shutil.copytree(finished_experiment, exp)
    ens = tmp_path / "refit"
    build_ensemble(EnsembleRequest((str(exp),), 1, str(ens), method="best", refit=True))
    c2 = tmp_path / "c2"  # the mean predictor: the zip needs both challenges
    write_ensemble(c2, {"challenge": 2, "members": [], "alpha": 0.0, "centre": 0.1}, [])
    info = export_submission(ens, c2, tmp_path / "submission.zip")
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    unpack_submission(info.path, unpacked)
    rng = np.random.default_rng(1)
    volts = (rng.normal(size=(4, 129, 200)) * 1e-5).astype(np.float32)
    windows = tmp_path / "windows.npy"
    np.save(windows, volts)
    run_submission(unpacked, 1, [windows], tmp_path / "pred.npy", 1)
    in_zip = np.load(tmp_path / "pred.npy").reshape(-1)
    here = load_ensemble(ens)(torch.from_numpy(volts) * 1e6).detach().numpy().reshape(-1)
    np.testing.assert_allclose(in_zip, here, rtol=1e-5, atol=1e-5)
