"""`eegtune ensemble --seeds`: the top trial retrained on Ray with a new seed, same folds."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from eegtune.cli import main
from eegtune.ensembles.finalists import retrain_config
from eegtune.training.config import TrainConfig

pytestmark = [pytest.mark.slow, pytest.mark.ray]


def _oof(trial_dir: Path) -> pd.DataFrame:
    frames = [pd.read_parquet(trial_dir / f"fold{k}" / "oof.parquet") for k in (0, 1)]
    return pd.concat(frames).sort_values(["subject", "recording", "window_index"])


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
    assert desc["n_candidates"] == 4 and desc["seeds"]["per_trial"] == 1
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
    # The trial's own recipe, saved complete with the trial, not the pre-groups default.
    assert config["decay_norms_and_biases"] is False

    # A rerun finds the finalist trained and does not train it again.
    mtime = (run / "fold0" / "checkpoint.pt").stat().st_mtime_ns
    assert main(argv) == 0
    assert "already trained" in capsys.readouterr().out
    assert (run / "fold0" / "checkpoint.pt").stat().st_mtime_ns == mtime


def test_a_config_saved_before_the_decay_rule_retrains_with_the_recipe_it_had():
    old = {"model": "softargmax_tcn", "lr": 1e-3, "seed": 0}  # no decay_norms_and_biases
    config = retrain_config(old, seed=2, split_seed=0, out_dir="o")
    assert config["decay_norms_and_biases"] is True and config["seed"] == 2
    assert TrainConfig.from_flat(config).decay_norms_and_biases is True
    new = {**old, "decay_norms_and_biases": False}
    assert retrain_config(new, seed=2, split_seed=0, out_dir="o")["decay_norms_and_biases"] is False
