import json

import pytest

from eegtune.training.config import FoldJob, TrainConfig, make_config, parse_overrides


def test_flat_round_trip_and_json():
    hp = TrainConfig(model="sparse_attention", model_params={"head_ratio": 0.1}, lr=3e-4)
    job = FoldJob(store="s", challenge=2, out_dir="o", fold=3, n_folds=5)
    flat = make_config(job, hp)
    assert flat["model.head_ratio"] == 0.1 and flat["fold"] == 3
    again = json.loads(json.dumps(flat))
    assert TrainConfig.from_flat(again) == hp
    assert FoldJob.from_flat(again) == job


def test_overrides_reach_model_params_and_reject_typos():
    hp = TrainConfig().with_overrides(parse_overrides(["lr=0.01", "model.dropout=0.3"]))
    assert hp.lr == 0.01 and hp.model_params == {"dropout": 0.3}
    with pytest.raises(ValueError, match="unknown setting"):
        TrainConfig().with_overrides({"learning_rate": 1.0})
    with pytest.raises(ValueError, match="key=value"):
        parse_overrides(["lr"])


@pytest.mark.parametrize("kwargs", [{"lr": 0.0}, {"batch_size": 0}, {"inner_val_fraction": 1.0}])
def test_bad_hyperparameters_are_refused(kwargs):
    with pytest.raises(ValueError):
        TrainConfig(**kwargs)


def test_bad_jobs_are_refused():
    with pytest.raises(ValueError, match="challenge"):
        FoldJob(store="s", challenge=3, out_dir="o")
    with pytest.raises(ValueError, match="split"):
        FoldJob(store="s", challenge=1, out_dir="o", split="window")


def test_group_learning_rates_round_trip_as_flat_keys():
    hp = TrainConfig(
        model="sparse_attention", lr_mult={"attention": 2.0, "head": 0.5}, warmup_epochs=1.5
    )
    flat = hp.to_flat()
    assert flat["lr_mult.attention"] == 2.0 and flat["lr_mult.head"] == 0.5
    assert "lr_mult" not in flat and flat["warmup_epochs"] == 1.5
    assert TrainConfig.from_flat(json.loads(json.dumps(flat))) == hp
    # The defaults mean what every config meant before groups: one rate, no warm-up.
    assert TrainConfig().lr_mult == {} and TrainConfig().warmup_epochs == 0.0


def test_overrides_reach_group_multipliers():
    hp = TrainConfig().with_overrides(parse_overrides(["lr_mult.head=3", "warmup_epochs=1"]))
    assert hp.lr_mult == {"head": 3.0} and isinstance(hp.lr_mult["head"], float)
    assert hp.warmup_epochs == 1
    with pytest.raises(ValueError, match=r"lr_mult\.<group>"):
        TrainConfig().with_overrides({"lr_mult": 3})  # the dict itself is not a setting


@pytest.mark.parametrize(
    "settings",
    [
        {"lr_mult": {"head": -1.0}},
        {"lr_mult": {"head": float("inf")}},
        {"lr_mult": {"head": float("nan")}},
        {"lr_mult": {"head": True}},
        {"lr_mult": {"head": "fast"}},
        {"warmup_epochs": -0.5},
    ],
)
def test_bad_group_rates_are_refused(settings):
    with pytest.raises(ValueError, match=r"lr_mult\.head|warmup_epochs"):
        TrainConfig(**settings)


def test_a_flat_config_parses_back_to_its_two_halves_and_unknown_keys_are_refused():
    from eegtune.errors import ConfigError
    from eegtune.training.config import make_config, parse_config

    job = FoldJob(store="s", challenge=2, out_dir="o", fold=1, n_folds=3, checkpoint_every=5.0)
    hp = TrainConfig(model="eegnex", model_params={"drop_prob": 0.3}, lr_mult={"head": 2.0})
    flat = make_config(job, hp)
    assert parse_config(flat) == (job, hp)
    assert parse_config({**flat, "workers_per_fold": 2}) == (job, hp)  # a transport key
    # A typo, or a setting renamed since, is refused instead of silently dropped.
    with pytest.raises(ConfigError, match=r"\['patiense'\]"):
        parse_config({**flat, "patiense": 3})


def test_a_model_hyperparameter_the_model_refuses_is_a_config_error():
    from eegtune.errors import ConfigError
    from eegtune.training.train_func import build_model

    with pytest.raises(ConfigError, match="softargmax_tcn"):
        build_model(TrainConfig(model="softargmax_tcn", model_params={"n_filters": -4}))
