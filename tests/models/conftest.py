"""Shared fixtures for the model tests: tiny hyperparameters and synthetic EEG windows."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from eegtune.models import EEGModel, create_model

ALL_MODELS = (
    "dense_attention",
    "eegnex",
    "mean",
    "ridge_bandpower",
    "softargmax_tcn",
    "sparse_attention",
)
NETWORKS = ("dense_attention", "eegnex", "softargmax_tcn", "sparse_attention")

# Small enough that a few optimiser steps take well under a second on 2 CPU cores.
TINY: dict[str, dict[str, Any]] = {
    "sparse_attention": dict(d_model=16, n_heads=2, n_layers=1, head_ratio=0.2, dropout=0.0),
    "dense_attention": dict(d_model=16, n_heads=2, n_layers=1, dropout=0.0),
    "softargmax_tcn": dict(n_filters=8, n_blocks=3, dropout=0.0),
    "eegnex": dict(filter_1=4, filter_2=8, kernel_block_1_2=16, drop_prob=0.0),
    "mean": {},
    "ridge_bandpower": {},
}
SMALL_SHAPE = dict(n_chans=9, n_times=100, sfreq=100.0)


def bump_windows(
    n: int, n_chans: int = 9, n_times: int = 100, sfreq: float = 100.0, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw-µV-like windows with a bump at a random sample t0 in the first channels.

    Target is the response time the bump stands for: t0 / sfreq + 0.5 s (window offset).
    Per-channel offsets and a large scale mimic raw µV, which the models must normalise away.
    """
    gen = torch.Generator().manual_seed(seed)
    t0 = torch.randint(15, n_times - 15, (n,), generator=gen)
    t = torch.arange(n_times).float()
    bump = torch.exp(-0.5 * ((t - t0[:, None].float()) / 2.0) ** 2)  # (n, T)
    x = torch.randn(n, n_chans, n_times, generator=gen)
    x[:, : max(1, n_chans // 2)] += 6.0 * bump[:, None, :]
    offsets = 50.0 * torch.randn(1, n_chans, 1, generator=gen)
    x = 20.0 * x + offsets
    x[:, -1] = 1e-3 * torch.randn(n, n_times, generator=gen)  # near-flat Cz reference
    return x, t0.float() / sfreq + 0.5


@pytest.fixture(autouse=True)
def single_thread():
    """These tensors are tiny: syncing intra-op threads costs more than it saves, and on a
    shared VM with a contended second vCPU it made some tests 100x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def make_model() -> Callable[..., EEGModel]:
    """create_model that also fits closed-form models, so every model can predict."""

    def _make(name: str, *, tiny: bool = False, seed: int = 0, **kwargs: Any) -> EEGModel:
        torch.manual_seed(seed)
        hparams = {**(TINY[name] if tiny else {}), **kwargs}
        model = create_model(name, **hparams)
        if not model.trainable_by_gradient:
            X, y = bump_windows(64, model.n_chans, model.n_times, model.sfreq, seed=seed + 1)
            model.fit(X.numpy(), y.numpy())  # type: ignore[attr-defined]
        return model.eval()

    return _make


@pytest.fixture
def raw_windows() -> Callable[..., torch.Tensor]:
    def _windows(batch: int, n_chans: int = 129, n_times: int = 200, seed: int = 0) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        scale = torch.from_numpy(np.linspace(5.0, 40.0, n_chans, dtype=np.float32))[:, None]
        return scale * torch.randn(batch, n_chans, n_times, generator=gen) + 30.0

    return _windows
