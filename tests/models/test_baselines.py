"""Closed-form baselines: mean and ridge on log band powers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eegtune.models import create_model

SFREQ, N_TIMES, N_CHANS = 100.0, 200, 5


def oscillation_windows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Each channel mixes 2, 10 and 20 Hz sines with random log-amplitudes per window."""
    rng = np.random.default_rng(seed)
    t = np.arange(N_TIMES) / SFREQ
    log_amp = rng.normal(0.0, 0.5, size=(n, N_CHANS, 3))
    phase = rng.uniform(0, 2 * np.pi, size=(n, N_CHANS, 3, 1))
    freqs = np.array([2.0, 10.0, 20.0])[None, None, :, None]
    waves = np.exp(log_amp)[..., None] * np.sin(2 * np.pi * freqs * t + phase)
    X = 10.0 * waves.sum(axis=2) + 0.05 * rng.normal(size=(n, N_CHANS, N_TIMES)) + 40.0
    X[:, -1] = 1e-3 * rng.normal(size=(n, N_TIMES))  # flat-ish Cz reference
    # log band power = 2·log amplitude + const, so y is linear in two of the features.
    y = 1.5 * log_amp[:, 0, 1] - 2.0 * log_amp[:, 2, 2] + 0.3
    return X.astype(np.float32), y.astype(np.float32)


def test_mean_baseline_predicts_the_training_mean(raw_windows) -> None:
    model = create_model("mean", n_chans=6, n_times=50, n_outputs=2)
    y = np.array([[1.0, -2.0], [2.0, 0.0], [4.5, 1.0]])
    model.fit(np.zeros((3, 6, 50), dtype=np.float32), y)
    model.eval()
    with torch.inference_mode():
        out = model(raw_windows(4, n_chans=6, n_times=50))
        single = model(raw_windows(1, n_chans=6, n_times=50))
    expected = torch.tensor([[2.5, -1 / 3]]).repeat(4, 1)
    torch.testing.assert_close(out, expected)
    assert single.shape == (1, 2)
    assert not model.trainable_by_gradient and list(model.parameters()) == []


def test_unfitted_baselines_refuse_to_predict(raw_windows) -> None:
    for name in ("mean", "ridge_bandpower"):
        with pytest.raises(RuntimeError, match="fit"):
            create_model(name)(raw_windows(1))


def test_ridge_recovers_a_linear_relation_of_band_powers() -> None:
    X, y = oscillation_windows(400, seed=0)
    X_test, y_test = oscillation_windows(200, seed=1)
    model = create_model("ridge_bandpower", n_chans=N_CHANS, n_times=N_TIMES, alpha=1e-3)
    model.fit(X, y)
    model.eval()
    with torch.inference_mode():
        pred = model(torch.from_numpy(X_test)).squeeze(1).numpy()
    r2 = 1 - np.mean((pred - y_test) ** 2) / np.var(y_test)
    assert r2 > 0.98, r2
    # The two generating features (ch0 alpha, ch2 beta; 5 bands per channel) dominate.
    coef = model.coef.squeeze(1).abs()
    assert set(coef.topk(2).indices.tolist()) == {0 * 5 + 2, 2 * 5 + 3}


def test_ridge_chunked_fit_equals_one_shot_fit() -> None:
    X, y = oscillation_windows(300, seed=2)
    one_shot = create_model("ridge_bandpower", n_chans=N_CHANS, n_times=N_TIMES)
    one_shot.fit(X, y, chunk_size=10_000)
    chunked = create_model("ridge_bandpower", n_chans=N_CHANS, n_times=N_TIMES)
    chunked.fit_batches((torch.from_numpy(X[i : i + 64]), y[i : i + 64]) for i in range(0, 300, 64))
    for key in ("feat_mean", "feat_scale", "coef", "intercept"):
        torch.testing.assert_close(chunked.state_dict()[key], one_shot.state_dict()[key])


def test_ridge_alpha_shrinks_coefficients() -> None:
    X, y = oscillation_windows(200, seed=3)
    norms = []
    for alpha in (0.0, 1e4):
        model = create_model("ridge_bandpower", n_chans=N_CHANS, n_times=N_TIMES, alpha=alpha)
        model.fit(X, y)
        norms.append(float(model.coef.norm()))
    assert norms[1] < 0.2 * norms[0]


def test_ridge_features_put_a_10hz_sine_in_the_alpha_band() -> None:
    model = create_model("ridge_bandpower", n_chans=3, n_times=N_TIMES, drop_cz=False)
    t = torch.arange(N_TIMES) / SFREQ
    x = torch.sin(2 * torch.pi * 10.0 * t).expand(1, 3, N_TIMES) * 30.0 + 5.0
    feats = model.features(x).view(3, 5)
    assert (feats.argmax(dim=1) == 2).all()  # delta, theta, alpha, beta, gamma
