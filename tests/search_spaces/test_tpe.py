"""The spaces drive real samplers: TPE past its random start-up, and Ray's OptunaSearch."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.samplers import TPESampler

from eegtune.search_spaces import SearchSpace, get_space, model_key
from tests.search_spaces.conftest import build


def _objective(space: SearchSpace):  # type: ignore[no-untyped-def]
    def objective(trial: optuna.Trial) -> float:
        constants = space.define(trial)
        config = {**trial.params, **constants}
        build(config)  # a config TPE proposes must be as valid as a random one
        return -math.log10(config["lr"]) + len(config) / 10

    return objective


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
@pytest.mark.parametrize("grouped", [False, True], ids=["independent", "grouped"])
def test_tpe_runs_every_space(space: SearchSpace, grouped: bool) -> None:
    # n_startup_trials=3 so that 5 of the 8 trials come from the TPE model, not random start-up;
    # grouped (multivariate) TPE is the mode that models the zoo's conditional branches jointly.
    options = {"multivariate": True, "group": True} if grouped else {}
    sampler = TPESampler(seed=0, n_startup_trials=3, **options)
    study = optuna.create_study(sampler=sampler)
    study.optimize(_objective(space), n_trials=8)
    assert len(study.trials) == 8
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


def test_ray_optuna_search_returns_flat_train_configs() -> None:
    import ray.tune.search.optuna as search

    space = get_space("sparse_attention")
    searcher = search.OptunaSearch(space=space.define, metric="loss", mode="min", seed=0)
    for i in range(4):
        config = searcher.suggest(f"t{i}")
        # Ray unflattens on "/", so the "model." keys must come back untouched.
        assert config["model"] == "sparse_attention"
        assert model_key("head_ratio") in config and "lr" in config
        build(config)
        searcher.on_trial_complete(f"t{i}", {"loss": float(i)})
