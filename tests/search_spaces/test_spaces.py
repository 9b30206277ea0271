"""Every registered space only ever yields configs a trial can train with."""

from __future__ import annotations

import dataclasses
from typing import Any

import optuna
import pytest
import torch

from eegtune.models import get_model_class
from eegtune.search_spaces import (
    ARCHITECTURES,
    SearchSpace,
    get_space,
    list_spaces,
    lr_mult_key,
    model_key,
    sample_config,
    sample_configs,
    summarize_space,
    zoo_models,
)
from eegtune.training.config import LR_MULT_PREFIX, MODEL_PREFIX, TrainConfig
from tests.search_spaces.conftest import SEEDS, build

TRAIN_KEYS = {f.name for f in dataclasses.fields(TrainConfig)} - {"model_params", "lr_mult"}
ATTENTION = ("sparse_attention", "dense_attention")


# braindecode's EEGNeX defaults use even kernels with padding="same"; torch notes the copy.
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
def test_every_sampled_config_builds_and_runs(space: SearchSpace) -> None:
    x = torch.randn(2, 129, 200)
    for seed in SEEDS:
        config = sample_config(space, seed)
        train, model = build(config)
        flat = train.to_flat()
        assert {key: flat[key] for key in config} == config  # nothing dropped or renamed
        assert set(get_model_class(train.model).challenges) >= set(space.challenges)
        if seed < 3:  # a forward pass catches what construction cannot (shapes, groups)
            model.eval()
            with torch.no_grad():
                assert model(x).shape == (2, 1)


def test_every_key_is_a_flat_train_config_key(space: SearchSpace) -> None:
    for config in sample_configs(space, 40, seed=1):
        hparams = set(get_model_class(config["model"]).Hparams.names())
        groups = set(build(config)[1].param_groups())
        for key in config:
            if key.startswith(MODEL_PREFIX):
                assert key.removeprefix(MODEL_PREFIX) in hparams, key
            elif key.startswith(LR_MULT_PREFIX):  # a group the model really has
                assert key.removeprefix(LR_MULT_PREFIX) in groups, key
            else:
                assert key in TRAIN_KEYS, key


def test_the_same_seed_gives_the_same_config(space: SearchSpace) -> None:
    assert sample_config(space, 7) == sample_config(space, 7)
    assert sample_config(space.name, 7) == sample_config(space, 7)
    assert sample_configs(space, 5, seed=3) == sample_configs(space, 5, seed=3)


def test_different_seeds_give_different_configs(space: SearchSpace) -> None:
    configs = [sample_config(space, seed) for seed in SEEDS]
    assert len({repr(sorted(c.items())) for c in configs}) == len(configs)
    assert len({c["lr"] for c in configs}) == len(configs)


def test_head_ratio_and_learning_rates_in_every_attention_config() -> None:
    seen = set()
    for space in list_spaces():
        for config in sample_configs(space, 40, seed=2):
            assert {"lr", "weight_decay", "batch_size"} <= config.keys()
            if config["model"] == "sparse_attention":
                assert 0.02 <= config[model_key("head_ratio")] <= 0.5
                assert config[model_key("pattern")] in ("blocked", "strided")
            if config["model"] in ATTENTION:
                assert config[model_key("d_model")] % config[model_key("n_heads")] == 0
                # Per-group rates on a log scale around the base rate, and a warm-up.
                for group in ("attention", "head"):
                    assert 0.1 <= config[lr_mult_key(group)] <= 10.0
                assert 0.0 <= config["warmup_epochs"] <= 2.0
                seen.add(config["model"])
            else:  # other architectures keep one group at the base rate
                assert not any(k.startswith(LR_MULT_PREFIX) for k in config)
    assert seen == set(ATTENTION)


def test_both_attention_spaces_search_group_rates_beside_head_ratio() -> None:
    for name in ATTENTION:
        dists = summarize_space(name, n_samples=8).distributions()
        for group in ("attention", "head"):
            dist = dists[lr_mult_key(group)]
            assert (dist.low, dist.high, dist.log) == (0.1, 10.0, True)
        assert "lr" in dists and "warmup_epochs" in dists
        assert (model_key("head_ratio") in dists) == (name == "sparse_attention")
        assert get_space(name).version == (2 if name == "sparse_attention" else 1)


def _only(model: str) -> SearchSpace:
    """A space searching just ``model``'s own parameters, from the shared sub-spaces."""

    def define(trial: optuna.Trial) -> dict[str, Any]:
        ARCHITECTURES[model](trial)
        return {"model": model}

    return SearchSpace(f"only_{model}", 1, "test", (1,), define)


@pytest.mark.parametrize("name", ["zoo", "zoo_c2"])
def test_zoo_suggests_only_the_chosen_architectures_parameters(name: str) -> None:
    space = get_space(name)
    challenge = space.challenges[0]
    own: dict[str, set[str]] = {}
    for model in zoo_models(challenge):
        keys = summarize_space(_only(model), n_samples=32).distributions()
        own[model] = {k for k in keys if k.startswith(MODEL_PREFIX)}
    chosen = set()
    for config in sample_configs(space, 60, seed=4):
        model = config["model"]
        chosen.add(model)
        model_keys = {k for k in config if k.startswith(MODEL_PREFIX)}
        assert model_keys <= own[model], model
        others = set().union(*(keys for m, keys in own.items() if m != model)) - own[model]
        assert not model_keys & others
        if model == "sparse_attention":
            assert model_key("head_ratio") in config
        else:
            assert model_key("head_ratio") not in config
    assert chosen == set(zoo_models(challenge))
    assert ("softargmax_tcn" in chosen) == (challenge == 1)


def test_softargmax_kl_knobs_only_with_kl_loss() -> None:
    for config in sample_configs("softargmax_tcn", 40, seed=5):
        kl = config[model_key("loss")] == "kl"
        assert (model_key("kl_sigma") in config) is kl
        assert (model_key("mse_weight") in config) is kl


def test_eegnex_recipe_keeps_the_braindecode_architecture() -> None:
    defaults = get_model_class("eegnex").Hparams()
    searched = {"drop_prob", "max_norm_conv", "max_norm_linear"}
    for config in sample_configs("eegnex_recipe", 10, seed=6):
        _, model = build(config)
        for name in defaults.names():
            if name not in searched:
                assert getattr(model.hp, name) == getattr(defaults, name), name


def test_one_distribution_per_parameter_name_across_all_spaces() -> None:
    # TPE pools a name's history, and results are compared across spaces: a name must mean
    # one range everywhere.
    merged: dict[str, object] = {}
    for space in list_spaces():
        for name, dist in summarize_space(space, n_samples=64).distributions().items():
            if name == "model":
                continue  # each zoo's architecture list is its own, by design
            assert merged.setdefault(name, dist) == dist, name
