"""sample_config / summarize_space / describe_space: what the CLI prints about a space."""

from __future__ import annotations

from typing import Any

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from eegtune.errors import ConfigError
from eegtune.search_spaces import (
    SearchSpace,
    default_point,
    describe_space,
    format_distribution,
    get_space,
    sample_config,
    summarize_space,
)


def test_sample_config_accepts_a_name_and_leaves_optuna_logging_alone() -> None:
    before = optuna.logging.get_verbosity()
    assert sample_config("zoo", 0) == sample_config(get_space("zoo"), 0)
    assert optuna.logging.get_verbosity() == before
    with pytest.raises(ValueError, match="unknown search space"):
        sample_config("nope", 0)


def test_summary_reads_distributions_from_trials() -> None:
    summary = summarize_space("sparse_attention", n_samples=16, seed=0)
    dists = summary.distributions()
    assert dists["lr"] == FloatDistribution(1e-4, 1e-2, log=True)
    assert dists["model.head_ratio"] == FloatDistribution(0.02, 0.5, log=True)
    assert dists["model.n_layers"] == IntDistribution(1, 3)
    assert dists["batch_size"] == CategoricalDistribution((32, 64, 128))
    assert all(p.n_present == 16 for p in summary.params)  # nothing conditional here
    assert summary.constants == {"model": ["sparse_attention"]}


def test_summary_marks_zoo_branches_as_conditional() -> None:
    summary = summarize_space("zoo", n_samples=64, seed=0)
    present = {p.name: p.n_present for p in summary.params}
    assert present["model"] == present["lr"] == 64
    assert 0 < present["model.head_ratio"] < 64
    assert 0 < present["model.kl_sigma"] < present["model.loss"] < 64
    assert summary.constants == {}


def test_describe_space_lists_every_parameter() -> None:
    text = describe_space("zoo", n_samples=64, seed=0)
    assert text.startswith("zoo/v2 (challenges 1): ")
    for name in summarize_space("zoo", n_samples=64, seed=0).distributions():
        assert f"  {name} " in text
    assert "float [0.0001, 0.01] log" in text
    assert "conditional: in " in text
    assert "example (seed 0): {" in text
    assert "constant sparse_attention" in describe_space("sparse_attention", n_samples=4)


@pytest.mark.parametrize(
    ("dist", "text"),
    [
        (FloatDistribution(1e-5, 0.1, log=True), "float [1e-05, 0.1] log"),
        (FloatDistribution(0.0, 0.4), "float [0, 0.4]"),
        (FloatDistribution(0.0, 0.5, step=0.1), "float [0, 0.5] step 0.1"),
        (IntDistribution(3, 9, step=2), "int [3, 9] step 2"),
        (IntDistribution(1, 3), "int [1, 3]"),
        (CategoricalDistribution(("kl", "mse")), "categorical [kl, mse]"),
    ],
)
def test_format_distribution(dist: optuna.distributions.BaseDistribution, text: str) -> None:
    assert format_distribution(dist) == text


def _clashing(trial: optuna.Trial) -> dict[str, Any]:
    # Two branches give one name two ranges: the mistake summarize_space is there to catch.
    if trial.suggest_categorical("model", ("eegnex", "sparse_attention")) == "eegnex":
        trial.suggest_float("lr", 1e-4, 1e-2, log=True)
    else:
        trial.suggest_float("lr", 1e-3, 1e-1, log=True)
    return {}


def test_summary_rejects_one_name_with_two_distributions() -> None:
    space = SearchSpace("clashing", 1, "test", (1,), _clashing)
    with pytest.raises(ValueError, match="'lr' is suggested with two distributions"):
        summarize_space(space, n_samples=16)


@pytest.mark.parametrize("name", ["softargmax_tcn", "dense_attention", "sparse_attention"])
def test_default_point_is_the_untuned_training_inside_the_spaces_ranges(name: str) -> None:
    from eegtune.models.registry import get_model_class
    from eegtune.training.config import TrainConfig

    point = default_point(name)
    summary = summarize_space(name)
    # Every parameter the space searches, at the default an untuned run trains with.
    assert set(point) == set(summary.distributions())
    (model,) = set(summary.constants["model"])
    untuned = TrainConfig(model=model).to_flat()
    for key, value in get_model_class(model).Hparams().__dict__.items():
        untuned[f"model.{key}"] = value
    for key, value in point.items():
        assert value == untuned.get(key, 1.0), key  # rate multipliers: 1.0, one rate
    # The space takes it as a trial: Ray's OptunaSearch enqueues points the same way.
    study = optuna.create_study()
    study.enqueue_trial(point)
    trial = study.ask()
    get_space(name).define(trial)
    assert trial.params == point


def test_default_point_refuses_a_space_over_architectures() -> None:
    with pytest.raises(ConfigError, match="searches the architecture"):
        default_point("zoo")
