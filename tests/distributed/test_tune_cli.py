"""`eegtune tune` paths the other tests reach only through the library: the random
sampler, data-parallel folds and fixed settings, run through the command line."""

from __future__ import annotations

import json

import optuna
import pandas as pd
import pytest
import torch

from eegtune.cli import main
from eegtune.search_spaces import get_space
from eegtune.training.folds import store_subjects
from tests.distributed.drills import trials

pytestmark = [pytest.mark.slow, pytest.mark.ray]


def _random_draw(space: str, seed: int) -> dict:
    """The first draw of a seeded random search over the space, made here with Optuna."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    trial = study.ask()
    get_space(space).define(trial)
    return trial.params


@pytest.mark.timeout(360)
def test_random_search_with_data_parallel_folds(prepared_store, tmp_path, capsys):
    runs = tmp_path / "runs"
    code = main(
        [
            "tune", "--store", str(prepared_store), "--challenge", "1",
            "--space", "softargmax_tcn", "--trials", "1", "--folds", "2", "--max-epochs", "1",
            "--name", "cli", "--storage-path", str(runs), "--num-cpus", "2", "--quiet",
            "--sampler", "random", "--seed", "5", "--workers-per-fold", "2",
            "--set", "patience=3", "--set", "inner_val_fraction=0.25",
        ]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert "2 folds × 2 worker(s)" in out and "COMPLETE" in out

    # The random sampler made the trial's draw: the same one Optuna's RandomSampler makes
    # with the experiment's seed.
    (trial,) = trials(runs, "cli")
    assert trial.params == _random_draw("softargmax_tcn", seed=5)
    saved = json.loads((runs / "cli" / "tune_job.json").read_text())
    assert saved["sampler"] == "random" and saved["plan"]["workers_per_fold"] == 2
    assert saved["fixed"] == {"patience": 3, "inner_val_fraction": 0.25}

    trial_dir = runs / "cli" / "folds" / trial.user_attrs["tune_trial_id"]
    config = json.loads((trial_dir / "config.json").read_text())
    assert config["patience"] == 3 and config["inner_val_fraction"] == 0.25
    for k in (0, 1):
        # Two workers per fold, each its own process, with ranks fold·2 and fold·2 + 1.
        replicas = [json.loads((trial_dir / f"fold{k}" / f"placement_{r}.json").read_text())
                    for r in (0, 1)]  # fmt: skip
        assert [w["rank"] for w in replicas] == [2 * k, 2 * k + 1]
        assert replicas[0]["pid"] != replicas[1]["pid"]
    oof = pd.concat(pd.read_parquet(f) for f in sorted(trial_dir.glob("fold*/oof.parquet")))
    assert sorted(oof["subject"].unique()) == sorted(store_subjects(prepared_store, 1)["subject"])
    assert oof.groupby("subject")["fold"].nunique().eq(1).all()


def test_a_setting_the_space_searches_cannot_also_be_fixed(prepared_store, tmp_path, capsys):
    args = ["tune", "--store", str(prepared_store), "--challenge", "1",
            "--space", "softargmax_tcn", "--name", "x", "--storage-path", str(tmp_path),
            "--num-cpus", "1", "--quiet"]  # fmt: skip
    assert main([*args, "--set", "lr=0.1"]) == 2
    assert "cannot fix ['lr']" in capsys.readouterr().err
    assert main([*args, "--set", "no_such_setting=1"]) == 2
    assert "unknown setting(s) ['no_such_setting']" in capsys.readouterr().err


@pytest.mark.timeout(360)
def test_smoke_search_of_sparse_attention_samples_and_trains_with_group_rates(
    prepared_store, tmp_path, capsys
):
    runs = tmp_path / "runs"
    code = main(
        [
            "tune", "--store", str(prepared_store), "--challenge", "1",
            "--space", "sparse_attention", "--smoke-test", "--max-epochs", "1",
            "--name", "groups",
            "--storage-path", str(runs), "--num-cpus", "2", "--quiet",
        ]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().out
    found = trials(runs, "groups")
    assert len(found) == 2 and all(t.state == optuna.trial.TrialState.COMPLETE for t in found)
    keys = ("lr", "lr_mult.attention", "lr_mult.head", "warmup_epochs", "model.head_ratio")
    for trial in found:
        assert set(keys) <= set(trial.params)
        assert all(0.1 <= trial.params[f"lr_mult.{g}"] <= 10.0 for g in ("attention", "head"))
        # The folds trained with the trial's draws: they are in the config each fold saved.
        trial_dir = runs / "groups" / "folds" / trial.user_attrs["tune_trial_id"]
        for k in (0, 1):
            ckpt = torch.load(trial_dir / f"fold{k}" / "checkpoint.pt", weights_only=True)
            assert {key: ckpt["config"][key] for key in keys} == {
                key: trial.params[key] for key in keys
            }
    assert found[0].params["lr_mult.head"] != found[1].params["lr_mult.head"]
    saved = json.loads((runs / "groups" / "tune_job.json").read_text())
    assert saved["space"] == "sparse_attention" and saved["space_version"] == 2
