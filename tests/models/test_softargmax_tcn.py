"""softargmax_tcn: expectation over the window, Gaussian KL targets, learning a bump's time."""

from __future__ import annotations

import pytest
import torch

from eegtune.models import create_model
from eegtune.models.softargmax_tcn import gaussian_log_target

from .conftest import SMALL_SHAPE, TINY, bump_windows


def test_prediction_is_the_softmax_expectation_of_time(raw_windows) -> None:
    model = create_model("softargmax_tcn", **TINY["softargmax_tcn"], **SMALL_SHAPE).eval()
    x = raw_windows(3, n_chans=9, n_times=100)
    with torch.inference_mode():
        logits = model.logits(x)
        pred = model(x)
    assert logits.shape == (3, 100)
    expected = (torch.softmax(logits, -1) * torch.arange(100) / 100.0).sum(-1, keepdim=True) + 0.5
    torch.testing.assert_close(pred, expected)
    assert ((pred >= 0.5) & (pred <= 0.5 + 0.99)).all()


def test_offset_is_a_hyperparameter(raw_windows) -> None:
    torch.manual_seed(0)
    a = create_model("softargmax_tcn", **TINY["softargmax_tcn"], **SMALL_SHAPE).eval()
    b = create_model(
        "softargmax_tcn", window_offset_s=0.0, **TINY["softargmax_tcn"], **SMALL_SHAPE
    ).eval()
    b.load_state_dict(a.state_dict())
    x = raw_windows(2, n_chans=9, n_times=100)
    with torch.inference_mode():
        torch.testing.assert_close(a(x) - b(x), torch.full((2, 1), 0.5))


def test_gaussian_target_is_normalised_and_clipped_to_the_window() -> None:
    centres = torch.tensor([50.0, -40.0, 250.0, 0.0])
    log_q = gaussian_log_target(centres, 100, sigma=5.0)
    q = log_q.exp()
    assert torch.isfinite(log_q).all()
    torch.testing.assert_close(q.sum(-1), torch.ones(4))
    assert q[0].argmax() == 50
    assert q[1].argmax() == 0 and q[1, 0] > 0.5  # before the window: mass at the first sample
    assert q[2].argmax() == 99 and q[2, 99] > 0.5  # after the window: mass at the last sample
    # Centred on the edge: the half that fell outside is renormalised, not lost.
    assert q[3, :3].sum() > 0.4


@pytest.mark.parametrize("loss", ["kl", "mse"])
def test_targets_outside_the_window_give_finite_gradients(loss: str) -> None:
    model = create_model("softargmax_tcn", loss=loss, **TINY["softargmax_tcn"], **SMALL_SHAPE)
    X, _ = bump_windows(4)
    y = torch.tensor([0.1, 0.45, 1.2, 3.5])  # two before, one inside, one after the window
    value = model.loss(X, y)
    value.backward()
    assert torch.isfinite(value)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_kl_loss_is_lowest_when_the_network_outputs_the_target_distribution() -> None:
    model = create_model(
        "softargmax_tcn", loss="kl", mse_weight=0.0, **TINY["softargmax_tcn"], **SMALL_SHAPE
    )
    X, y = bump_windows(4)
    target = gaussian_log_target((y - 0.5) * 100.0, 100, sigma=5.0)
    model.logits = lambda x: target  # type: ignore[method-assign]
    assert model.loss(X, y).abs() < 1e-5
    assert model.loss(X, y + 0.2) > 0.5


@pytest.mark.parametrize("loss", ["kl", "mse"])
def test_training_moves_the_prediction_toward_the_bump(loss: str) -> None:
    torch.manual_seed(0)
    model = create_model("softargmax_tcn", loss=loss, **TINY["softargmax_tcn"], **SMALL_SHAPE)
    X, y = bump_windows(32, seed=5)
    X_test, y_test = bump_windows(32, seed=6)

    def test_error() -> float:
        model.eval()
        with torch.no_grad():
            return float((model(X_test).squeeze(1) - y_test).abs().mean())

    before = test_error()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(40):
        opt.zero_grad()
        model.loss(X, y).backward()
        opt.step()
    after = test_error()
    # Before training the prediction sits near the window centre (~0.25 s mean error).
    assert before > 0.1
    assert after < 0.05, (before, after)


def test_only_single_output_challenge_1() -> None:
    with pytest.raises(ValueError, match="n_outputs"):
        create_model("softargmax_tcn", n_outputs=2)
    assert create_model("softargmax_tcn").challenges == (1,)
