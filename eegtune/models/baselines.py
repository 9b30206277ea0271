"""Closed-form baselines: ``mean`` and ``ridge_bandpower``.

They are EEGModels (nn.Modules whose fitted state lives in buffers, so a state_dict round-trips
and they export like the networks) but are fitted by ``fit`` rather than by gradient descent.
Fitting streams: ``partial_fit`` accumulates sufficient statistics in float64 and ``finalize``
solves, so a dataset larger than memory can be fed chunk by chunk (``fit_batches``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from eegtune.models.base import EEGModel, ModelHparams, check_positive
from eegtune.models.registry import register_model

__all__ = ["BANDS", "ClosedFormModel", "MeanBaseline", "RidgeBandpower", "RidgeHparams"]

ArrayLike = np.ndarray | Tensor

# (name, low Hz inclusive, high Hz exclusive); gamma is capped at Nyquist.
BANDS: tuple[tuple[str, float, float], ...] = (
    ("delta", 1.0, 4.0),
    ("theta", 4.0, 8.0),
    ("alpha", 8.0, 13.0),
    ("beta", 13.0, 30.0),
    ("gamma", 30.0, 45.0),
)


class ClosedFormModel(EEGModel):
    """Closed-form fit: ``reset``, then ``partial_fit`` per chunk, then ``finalize``."""

    trainable_by_gradient = False
    scales_targets = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.register_buffer("fitted", torch.tensor(False))

    def reset(self) -> None:
        raise NotImplementedError

    def partial_fit(self, X: ArrayLike, y: ArrayLike) -> None:
        raise NotImplementedError

    def finalize(self) -> None:
        raise NotImplementedError

    def fit(self, X: ArrayLike, y: ArrayLike, chunk_size: int = 1024) -> None:
        """Fit on arrays; X is read chunk_size windows at a time (works on np.memmap)."""
        if len(X) != len(y):
            raise ValueError(f"X has {len(X)} windows but y has {len(y)} targets")
        self.fit_batches(
            (X[i : i + chunk_size], y[i : i + chunk_size]) for i in range(0, len(X), chunk_size)
        )

    def fit_batches(self, batches: Iterable[tuple[ArrayLike, ArrayLike]]) -> None:
        self.reset()
        # Features feed a float64 solve: a caller's autocast must not round them to bf16.
        with torch.autocast(self.fitted.device.type, enabled=False):
            for X, y in batches:
                self.partial_fit(X, y)
        self.finalize()

    def _targets(self, y: ArrayLike) -> Tensor:
        y64 = torch.as_tensor(np.asarray(y) if not isinstance(y, Tensor) else y.detach().cpu())
        y64 = y64.to(torch.float64)
        if y64.ndim == 1:
            y64 = y64.unsqueeze(-1)
        if y64.ndim != 2 or y64.shape[1] != self.n_outputs:
            raise ValueError(
                f"y must have shape (n,) or (n, {self.n_outputs}), got {tuple(y64.shape)}"
            )
        return y64

    def _windows(self, X: ArrayLike) -> Tensor:
        x = torch.as_tensor(np.asarray(X) if not isinstance(X, Tensor) else X.detach())
        x = x.to(device=self.fitted.device, dtype=torch.float32)
        self.check_input(x)
        return x

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        # Devices: fit sums float64 statistics on the CPU; predict runs wherever .to() put us.
        if not bool(self.fitted):
            raise RuntimeError(f"{self.name}: call fit() (or load a fitted state_dict) first")
        # Fitted in float64; under bf16 autocast ridge predictions moved ~10% of their spread.
        with torch.autocast(x.device.type, enabled=False):
            return self.predict_windows(x)

    def predict_windows(self, x: Tensor) -> Tensor:
        raise NotImplementedError


@register_model("mean")
class MeanBaseline(ClosedFormModel):
    """Predicts the training-set mean target, whatever the input."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.register_buffer("mean", torch.zeros(self.n_outputs))
        self.reset()

    def reset(self) -> None:
        self._sum = torch.zeros(self.n_outputs, dtype=torch.float64)
        self._count = 0

    def partial_fit(self, X: ArrayLike, y: ArrayLike) -> None:
        y64 = self._targets(y)
        self._sum += y64.sum(dim=0)
        self._count += y64.shape[0]

    def finalize(self) -> None:
        if self._count == 0:
            raise ValueError("mean: no training targets were given")
        self.mean.copy_(self._sum / self._count)
        self.fitted.fill_(True)

    def predict_windows(self, x: Tensor) -> Tensor:
        return self.mean.to(x.dtype).repeat(x.shape[0], 1)


@dataclass(frozen=True)
class RidgeHparams(ModelHparams):
    # L2 penalty per window on standardised features (sklearn's alpha divided by the number
    # of training windows), so its strength does not fade as the data grows: with ~1,000
    # windows from ~20 subjects, sklearn's alpha=10 fits subject identity, not the target.
    alpha: float = 1.0
    window_norm: bool = False  # z-score windows first: keeps only the relative spectrum

    def validate(self) -> None:
        check_positive("alpha", self.alpha, allow_zero=True)


@register_model("ridge_bandpower")
class RidgeBandpower(ClosedFormModel):
    """Ridge regression on standardised per-channel log band powers (Hann-windowed rfft)."""

    Hparams = RidgeHparams
    hp: RidgeHparams

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        freqs = np.fft.rfftfreq(self.n_times, d=1.0 / self.sfreq)
        nyquist = self.sfreq / 2
        columns = []
        for name, lo, hi in BANDS:
            in_band = (freqs >= lo) & (freqs < min(hi, nyquist))
            if not in_band.any():
                raise ValueError(
                    f"band {name} has no rfft bin at n_times={self.n_times}, sfreq={self.sfreq}"
                )
            columns.append(in_band / in_band.sum())
        # Fixed by the config, so not saved in the state_dict.
        self.register_buffer(
            "band_avg", torch.tensor(np.stack(columns, 1), dtype=torch.float32), persistent=False
        )
        self.register_buffer(
            "taper", torch.hann_window(self.n_times, periodic=False), persistent=False
        )
        n_feat = self.n_features
        self.register_buffer("feat_mean", torch.zeros(n_feat))
        self.register_buffer("feat_scale", torch.ones(n_feat))
        self.register_buffer("coef", torch.zeros(n_feat, self.n_outputs))
        self.register_buffer("intercept", torch.zeros(self.n_outputs))
        self.reset()

    @property
    def n_features(self) -> int:
        return self.n_net_chans * len(BANDS)

    def features(self, x: Tensor) -> Tensor:
        """(B, n_chans, n_times) raw µV -> (B, n_net_chans * 5) log band powers."""
        if self.hp.window_norm:
            x = self.norm(x)
        else:
            x = x[:, :-1] if self.hp.drop_cz else x
            x = x - x.mean(dim=-1, keepdim=True)
        power = torch.fft.rfft(x * self.taper, dim=-1).abs().square()
        # The log compresses the power-law spectrum into a near-Gaussian, ridge-friendly scale.
        return torch.log(power @ self.band_avg + 1e-6).flatten(1)

    def reset(self) -> None:
        n_feat, n_out = self.n_features, self.n_outputs
        self._n = 0
        self._shift: Tensor | None = None  # shifted sums keep the float64 covariance accurate
        self._s1 = torch.zeros(n_feat, dtype=torch.float64)
        self._s2 = torch.zeros(n_feat, n_feat, dtype=torch.float64)
        self._sy = torch.zeros(n_feat, n_out, dtype=torch.float64)
        self._ysum = torch.zeros(n_out, dtype=torch.float64)

    @torch.no_grad()
    def partial_fit(self, X: ArrayLike, y: ArrayLike) -> None:
        y64 = self._targets(y)
        f = self.features(self._windows(X)).to(torch.float64).cpu()
        if f.shape[0] != y64.shape[0]:
            raise ValueError(f"X has {f.shape[0]} windows but y has {y64.shape[0]} targets")
        if self._shift is None:
            self._shift = f.mean(dim=0)
        f = f - self._shift
        self._n += f.shape[0]
        self._s1 += f.sum(dim=0)
        self._s2 += f.T @ f
        self._sy += f.T @ y64
        self._ysum += y64.sum(dim=0)

    def finalize(self) -> None:
        if self._n < 2 or self._shift is None:
            raise ValueError("ridge_bandpower: need at least 2 training windows")
        n = self._n
        sxx = self._s2 - torch.outer(self._s1, self._s1) / n  # centred X^T X
        sxy = self._sy - torch.outer(self._s1, self._ysum) / n  # centred X^T y
        std = torch.sqrt(torch.clamp(torch.diagonal(sxx) / n, min=0.0))
        scale = torch.where(std > 1e-12, std, torch.ones_like(std))  # constant features -> coef 0
        gram = sxx / torch.outer(scale, scale) / n  # the features' correlation matrix
        rhs = sxy / scale.unsqueeze(1) / n
        eye = torch.eye(gram.shape[0], dtype=torch.float64)
        try:
            coef = torch.linalg.solve(gram + self.hp.alpha * eye, rhs)
        except torch.linalg.LinAlgError:  # alpha=0 with collinear features: min-norm solution
            coef = torch.linalg.lstsq(gram + self.hp.alpha * eye, rhs, driver="gelsd").solution
        self.feat_mean.copy_(self._shift + self._s1 / n)
        self.feat_scale.copy_(scale)
        self.coef.copy_(coef)
        self.intercept.copy_(self._ysum / n)
        self.fitted.fill_(True)

    def predict_windows(self, x: Tensor) -> Tensor:
        z = (self.features(x) - self.feat_mean) / self.feat_scale
        return z @ self.coef + self.intercept
