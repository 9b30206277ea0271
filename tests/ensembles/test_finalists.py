"""`eegtune ensemble --seeds`: the top trial retrained on Ray with a new seed, same folds."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from eegtune.cli import main
from eegtune.distributed.experiment import Experiment
from eegtune.ensembles import load_ensemble
from eegtune.ensembles.finalists import retrain_config
from eegtune.ensembles.refit import chosen_epochs
from eegtune.models import model_from_config
from eegtune.training.train_func import load_checkpoint, refit_dir

pytestmark = [pytest.mark.slow, pytest.mark.ray]


def _oof(trial_dir: Path) -> pd.DataFrame:
    frames = [pd.read_parquet(trial_dir / f"fold{k}" / "oof.parquet") for k in (0, 1)]
    return pd.concat(frames).sort_values(["subject", "recording", "window_index"])


def _pooled_nrmse(oof: pd.DataFrame) -> float:
    """The challenge's NRMSE by hand: RMSE over every OOF row of both folds at once, divided
    by the population (ddof=0) standard deviation of those rows' targets."""
    y = oof["target"].to_numpy(dtype=np.float64)
    p = oof["prediction"].to_numpy(dtype=np.float64)
    return float(np.sqrt(np.mean((y - p) ** 2)) / np.sqrt(np.mean((y - y.mean()) ** 2)))


@pytest.mark.timeout(600)
def test_seeds_retrain_the_top_trial_on_the_same_folds_and_resume(
    finished_experiment, tmp_path, capsys
):
    exp = Path(shutil.copytree(finished_experiment, tmp_path / "runs" / "c1"))
    argv = [
        "ensemble", "--experiment", str(exp), "--challenge", "1", "--method", "mean",
        "--top-k", "1", "--seeds", "1", "--num-cpus", "2", "--out", str(tmp_path / "ens"),
    ]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    desc = json.loads((tmp_path / "ens" / "ensemble.json").read_text())
    # Three trials and one seed bag: the top trial and its retraining, averaged.
    assert desc["n_candidates"] == 4 and desc["n_seed_bags"] == 1
    assert desc["seeds"]["per_trial"] == 1
    assert desc["scores"]["best_single"]["member"].endswith("seed 0")  # never the bag
    (trial, spread), *_ = desc["seeds"]["spread"].items()
    assert spread["seeds"] == [0, 1] and len(desc["seeds"]["spread"]) == 1
    assert f"seed spread {trial}: std {spread['std']:.4f}" in printed
    assert spread["std"] == pytest.approx(np.std(spread["oof_nrmse"], ddof=1))

    # The finalist kept its trial's folds (same subjects per fold) but trained anew.
    (run,) = [p for p in (exp / "finalists").iterdir() if p.name.endswith("_seed1")]
    original = _oof(exp / "folds" / run.name.removesuffix("_seed1"))
    retrained = _oof(run)
    assert (
        retrained.groupby("fold")["subject"]
        .apply(set)
        .equals(original.groupby("fold")["subject"].apply(set))
    )
    assert not np.allclose(retrained["prediction"], original["prediction"])
    config = json.loads((run / "config.json").read_text())
    assert config["seed"] == 1 and config["split_seed"] == 0

    # The seed spread recomputed from the OOF files alone: each seed's pooled NRMSE (the
    # trial's own run is seed 0, the finalist seed 1), then their std across seeds (ddof=1).
    by_hand = [_pooled_nrmse(original), _pooled_nrmse(retrained)]
    assert spread["oof_nrmse"] == pytest.approx(by_hand, rel=1e-9, abs=1e-12)
    want_std = float(np.std(by_hand, ddof=1))
    assert want_std == pytest.approx(abs(by_hand[0] - by_hand[1]) / np.sqrt(2), rel=1e-12)
    assert spread["std"] == pytest.approx(want_std, rel=1e-9, abs=1e-12)
    assert f"seed spread {trial}: std {want_std:.4f} over seeds [0, 1]" in printed
    # The bag's OOF: the two runs' predictions averaged row by row, then pooled.
    bag = original.assign(
        prediction=(original["prediction"].to_numpy(np.float64) + retrained["prediction"]) / 2
    )
    assert spread["bag_oof_nrmse"] == pytest.approx(_pooled_nrmse(bag), rel=1e-6)
    assert f"their seed bag {_pooled_nrmse(bag):.4f}" in printed
    # --top-k 1 retrained the trial with the lowest pooled OOF NRMSE.
    trials = sorted(p for p in (exp / "folds").iterdir() if p.is_dir())
    assert by_hand[0] == pytest.approx(min(_pooled_nrmse(_oof(t)) for t in trials), rel=1e-12)
    # The trial's own recipe, saved complete with the trial, not the pre-groups default.
    assert config["decay_norms_and_biases"] is False

    # A rerun finds the finalist trained and does not train it again.
    mtime = (run / "fold0" / "checkpoint.pt").stat().st_mtime_ns
    assert main(argv) == 0
    assert "already trained" in capsys.readouterr().err  # a log line: stderr
    assert (run / "fold0" / "checkpoint.pt").stat().st_mtime_ns == mtime
    again = json.loads((tmp_path / "ens" / "ensemble.json").read_text())["seeds"]["spread"]
    assert again[trial]["oof_nrmse"] == pytest.approx(by_hand, rel=1e-9, abs=1e-12)
    assert again[trial]["std"] == pytest.approx(want_std, rel=1e-9, abs=1e-12)

    # A seed bag ships every run's fold models and predicts their mean.
    original = exp / "folds" / run.name.removesuffix("_seed1")
    argv[argv.index("mean")] = "best"
    # Make the retrained run exact, so the bag (half its error) is the best member on
    # every fold, and build again: nothing trains, the bag ships.
    for k in (0, 1):
        f = run / f"fold{k}" / "oof.parquet"
        frame = pd.read_parquet(f)
        frame.assign(prediction=frame["target"].astype(np.float32)).to_parquet(f, index=False)
    assert main(argv) == 0
    desc = json.loads((tmp_path / "ens" / "ensemble.json").read_text())
    (member,) = desc["members"]
    assert member["label"].endswith("seeds 0+1") and desc["shipped"] == "best"
    assert [Path(p["trial_dir"]) for p in member["parts"]] == [original, run]
    (files,) = desc["fold_models"]
    assert len(files) == 4  # 2 folds × 2 seeds

    models = []
    for trial_dir in (original, run):
        for k in (0, 1):
            ckpt = torch.load(trial_dir / f"fold{k}" / "checkpoint.pt", weights_only=True)
            model = model_from_config(ckpt["model_config"])
            model.load_state_dict(ckpt["state_dict"])
            models.append(model.eval())
    x = torch.randn(3, 129, 200, generator=torch.Generator().manual_seed(2)) * 10
    with torch.no_grad():
        bag = torch.stack([m(x).double() for m in models]).mean(dim=0)
        got = load_ensemble(tmp_path / "ens")(x).double()
    centre, alpha = desc["centre"], desc["alpha"]
    torch.testing.assert_close(got, centre + alpha * (bag - centre), rtol=1e-5, atol=1e-5)

    # With --refit, a seed bag ships one model per seed, each trained on every subject,
    # and predicts their mean.
    assert main([*argv, "--refit"]) == 0
    desc = json.loads((tmp_path / "ens" / "ensemble.json").read_text())
    (files,) = desc["fold_models"]
    assert len(files) == 2
    refits, seeds = [], []
    for trial_dir in (original, run):
        model, ckpt = load_checkpoint(Path(refit_dir(trial_dir)) / "checkpoint.pt")
        assert ckpt["metrics"]["refit_epochs"] == chosen_epochs(trial_dir, 2)
        refits.append(model)
        seeds.append(ckpt["config"]["seed"])
    assert seeds == [0, 1]
    with torch.no_grad():
        refit_bag = torch.stack([m(x).double() for m in refits]).mean(dim=0)
        got = load_ensemble(tmp_path / "ens")(x).double()
    centre, alpha = desc["centre"], desc["alpha"]
    torch.testing.assert_close(got, centre + alpha * (refit_bag - centre), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(refit_bag, bag, rtol=1e-3)  # new models, not the fold models


def test_a_config_saved_before_the_decay_rule_retrains_with_the_recipe_it_had(tmp_path):
    exp = Experiment(str(tmp_path), tmp_path, {"seed": 0})
    # A trial's saved config from before the setting existed: no decay_norms_and_biases.
    old = {"store": "s", "challenge": 1, "out_dir": "x", "model": "softargmax_tcn", "lr": 1e-3}
    job, hp = retrain_config({**old, "seed": 0}, seed=2, exp=exp, out_dir="o")
    assert hp.decay_norms_and_biases is True and hp.seed == 2
    assert job.split_seed == 0 and job.out_dir == "o"
    new = {**old, "seed": 0, "decay_norms_and_biases": False}
    _, hp = retrain_config(new, seed=2, exp=exp, out_dir="o")
    assert hp.decay_norms_and_biases is False
