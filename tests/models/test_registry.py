"""The shared contract, checked on every registered model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from eegtune.models import (
    EEGModel,
    WindowNorm,
    create_model,
    get_model_class,
    list_models,
    model_from_config,
)

from .conftest import ALL_MODELS, NETWORKS, SMALL_SHAPE, TINY, bump_windows


def test_registry_lists_exactly_the_six_models() -> None:
    assert list_models() == sorted(ALL_MODELS)
    for name in ALL_MODELS:
        assert get_model_class(name).name == name


def test_unknown_model_name_names_the_choices() -> None:
    with pytest.raises(ValueError, match="sparse_attention"):
        create_model("lightweight_rt_cnn")


def test_unknown_hparam_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"head_ratio.*valid hyperparameters.*n_heads"):
        create_model("dense_attention", head_ratio=0.5)


@pytest.mark.parametrize(
    ("name", "hparams"),
    [
        ("sparse_attention", {"pattern": "random"}),
        ("sparse_attention", {"head_ratio": 1.5}),
        ("sparse_attention", {"d_model": 30, "n_heads": 4}),
        ("softargmax_tcn", {"loss": "huber"}),
        ("eegnex", {"filter_1": 2.5}),
        ("ridge_bandpower", {"alpha": -1.0}),
        ("mean", {"drop_cz": "yes"}),
    ],
)
def test_invalid_hparam_values_raise(name: str, hparams: dict) -> None:
    with pytest.raises(ValueError):
        create_model(name, **hparams)


def test_numpy_hparams_are_coerced_to_json_types() -> None:
    model = create_model("sparse_attention", d_model=np.int64(32), head_ratio=np.float32(0.2))
    config = model.get_config()
    assert type(config["d_model"]) is int and type(config["head_ratio"]) is float
    json.dumps(config)


def test_window_norm_zscores_each_channel_and_drops_cz(raw_windows) -> None:
    x = raw_windows(3, n_chans=6, n_times=50)
    z = WindowNorm(drop_cz=True)(x)
    assert z.shape == (3, 5, 50)
    torch.testing.assert_close(z.mean(-1), torch.zeros(3, 5), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std(-1, unbiased=False), torch.ones(3, 5), atol=1e-4, rtol=0)
    assert WindowNorm(drop_cz=False)(x).shape == (3, 6, 50)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_eval_shape_determinism_and_batch_independence(name, make_model, raw_windows) -> None:
    model = make_model(name)  # default hparams, (129, 200) windows
    x = raw_windows(4)
    with torch.inference_mode():
        out = model(x)
        again = model(x)
        single = model(x[2:3])
    assert out.shape == (4, 1) and single.shape == (1, 1)
    assert torch.isfinite(out).all()
    assert torch.equal(out, again)
    # Batch size 1 (the submission setting) must give the same answer as inside a batch.
    torch.testing.assert_close(single, out[2:3], atol=1e-5, rtol=1e-5)
    if name != "mean":  # the mean baseline ignores its input by design
        assert out.std() > 0


@pytest.mark.parametrize("name", ALL_MODELS)
def test_config_json_round_trip_reproduces_outputs(name, make_model, raw_windows) -> None:
    model = make_model(name, tiny=True, n_outputs=1, **SMALL_SHAPE)
    config = json.loads(json.dumps(model.get_config()))
    assert config["name"] == name and config["n_chans"] == 9 and config["drop_cz"] is True
    clone = model_from_config(config)
    assert type(clone) is type(model) and clone.get_config() == model.get_config()
    clone.load_state_dict(model.state_dict())
    clone.eval()
    x = raw_windows(2, n_chans=9, n_times=100)
    with torch.inference_mode():
        assert torch.equal(clone(x), model(x))


@pytest.mark.parametrize("name", ALL_MODELS)
def test_state_dict_survives_weights_only_load(name, make_model, raw_windows, tmp_path) -> None:
    model = make_model(name, tiny=True, **SMALL_SHAPE)
    path = tmp_path / f"{name}.pt"
    torch.save(model.state_dict(), path)
    fresh = create_model(name, **TINY[name], **SMALL_SHAPE)
    fresh.load_state_dict(torch.load(path, weights_only=True))
    fresh.eval()
    x = raw_windows(3, n_chans=9, n_times=100, seed=1)
    with torch.inference_mode():
        assert torch.equal(fresh(x), model(x))


@pytest.mark.parametrize("name", NETWORKS)
def test_networks_normalise_raw_microvolts_inside(name, make_model, raw_windows) -> None:
    model = make_model(name, tiny=True, **SMALL_SHAPE)
    x = raw_windows(2, n_chans=9, n_times=100)
    rescaled = 1000.0 * x - 123.0 * torch.arange(9.0)[:, None]
    with torch.inference_mode():
        torch.testing.assert_close(model(rescaled), model(x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", NETWORKS)
def test_drop_cz_ignores_the_last_channel(name, make_model, raw_windows) -> None:
    x = raw_windows(2, n_chans=9, n_times=100)
    poked = x.clone()
    poked[:, -1] = torch.randn_like(poked[:, -1]) * 50.0
    with torch.inference_mode():
        dropped = make_model(name, tiny=True, **SMALL_SHAPE)
        assert torch.equal(dropped(poked), dropped(x))
        kept = make_model(name, tiny=True, drop_cz=False, **SMALL_SHAPE)
        assert not torch.allclose(kept(poked), kept(x))


def test_class_attributes() -> None:
    for name in ALL_MODELS:
        cls = get_model_class(name)
        assert issubclass(cls, EEGModel)
        assert cls.trainable_by_gradient is (name in NETWORKS)
        assert cls.challenges == ((1,) if name == "softargmax_tcn" else (1, 2))


@pytest.mark.parametrize("name", NETWORKS)
def test_gradient_steps_fit_a_tiny_problem(name, make_model) -> None:
    """Targets depend on where a bump sits; the loss must fall well below the target variance."""
    torch.manual_seed(0)
    model = make_model(name, tiny=True, **SMALL_SHAPE).train()
    X, y = bump_windows(32, seed=3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    # Normalised by var(y): 1.0 is what predicting the mean achieves.
    with torch.no_grad():
        start = torch.nn.functional.mse_loss(model(X).squeeze(1), y) / y.var()
    for _ in range(100):
        opt.zero_grad()
        model.loss(X, y).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        end = torch.nn.functional.mse_loss(model(X).squeeze(1), y) / y.var()
    assert end < 0.2 and end < 0.2 * start, (float(start), float(end))
