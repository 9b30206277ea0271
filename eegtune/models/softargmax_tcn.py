"""``softargmax_tcn``: response time as the soft-argmax of per-sample logits (Challenge 1 only).

The winning Challenge 1 entries located the button press in time instead of regressing a
number from pooled features: a temporal conv net scores every sample of the window, the
softmax over those scores is a distribution over "when is the press", and the prediction is
its expectation converted to seconds plus the window's offset from the stimulus (0.5 s).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from eegtune.models.base import EEGModel, ModelHparams, as_target, check_choice, check_positive
from eegtune.models.registry import register_model

__all__ = ["SoftArgmaxTCN", "SoftArgmaxTCNHparams", "gaussian_log_target"]

LOSSES = ("mse", "kl")


@dataclass(frozen=True)
class SoftArgmaxTCNHparams(ModelHparams):
    n_filters: int = 32
    kernel_size: int = 5
    n_blocks: int = 4  # dilations 1, 2, 4, 8: receptive field ~ 2·(k-1)·15 + 1 = 121 samples
    dropout: float = 0.1
    window_offset_s: float = 0.5
    loss: str = "kl"
    kl_sigma: float = 5.0  # samples: 50 ms at 100 Hz
    mse_weight: float = 0.1  # small MSE on the expectation, added to the KL loss

    def validate(self) -> None:
        for name in ("n_filters", "kernel_size", "n_blocks", "kl_sigma"):
            check_positive(name, getattr(self, name))
        check_positive("mse_weight", self.mse_weight, allow_zero=True)
        check_choice("loss", self.loss, LOSSES)
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"hyperparameter 'dropout' must be in [0, 1), got {self.dropout}")


class ResidualBlock(nn.Module):
    def __init__(self, channels: int, kernel_size: int, dilation: int, dropout: float) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv1d(channels, channels, kernel_size, dilation=dilation, padding="same"),
            nn.BatchNorm1d(channels),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Conv1d(channels, channels, kernel_size, dilation=dilation, padding="same"),
            nn.BatchNorm1d(channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(x + self.body(x))


def gaussian_log_target(centre: Tensor, n_times: int, sigma: float) -> Tensor:
    """Log of a Gaussian over sample indices 0..n_times-1, renormalised to the window.

    Built in log space so a centre far outside the window (RT < offset or beyond the window)
    still yields a proper distribution, piled up at the nearest edge, instead of 0/0.
    """
    t = torch.arange(n_times, device=centre.device, dtype=centre.dtype)
    logits = -0.5 * ((t - centre.unsqueeze(-1)) / sigma) ** 2
    return torch.log_softmax(logits, dim=-1)


@register_model("softargmax_tcn")
class SoftArgmaxTCN(EEGModel):
    scales_targets = False  # the output is an expectation over the window's own time axis
    Hparams = SoftArgmaxTCNHparams
    hp: SoftArgmaxTCNHparams
    challenges = (1,)

    def __init__(
        self,
        n_chans: int = 129,
        n_times: int = 200,
        n_outputs: int = 1,
        sfreq: float = 100.0,
        **hparams: object,
    ) -> None:
        super().__init__(n_chans, n_times, n_outputs, sfreq, **hparams)
        if self.n_outputs != 1:
            raise ValueError("softargmax_tcn predicts one response time: n_outputs must be 1")
        hp = self.hp
        self.spatial = nn.Sequential(
            nn.Conv1d(self.n_net_chans, hp.n_filters, 1, bias=False),
            nn.BatchNorm1d(hp.n_filters),
            nn.GELU(),
        )
        self.blocks = nn.Sequential(
            *(
                ResidualBlock(hp.n_filters, hp.kernel_size, 2**i, hp.dropout)
                for i in range(hp.n_blocks)
            )
        )
        self.to_logits = nn.Conv1d(hp.n_filters, 1, 1)
        self.register_buffer(
            "time_s", torch.arange(self.n_times, dtype=torch.float32) / self.sfreq, persistent=False
        )

    def logits(self, x: Tensor) -> Tensor:
        """(B, n_chans, n_times) raw µV -> (B, n_times) logits over the press sample."""
        self.check_input(x)
        h = self.blocks(self.spatial(self.norm(x)))
        return self.to_logits(h).squeeze(1)

    def expectation(self, logits: Tensor) -> Tensor:
        expected_s = (torch.softmax(logits, dim=-1) * self.time_s).sum(dim=-1, keepdim=True)
        return expected_s + self.hp.window_offset_s

    def forward(self, x: Tensor) -> Tensor:
        return self.expectation(self.logits(x))

    def loss(self, X: Tensor, y: Tensor) -> Tensor:
        logits = self.logits(X)
        pred = self.expectation(logits)
        target = as_target(y, pred)
        mse = F.mse_loss(pred, target)
        if self.hp.loss == "mse":
            return mse
        centre = (target.squeeze(-1) - self.hp.window_offset_s) * self.sfreq
        log_q = gaussian_log_target(centre, self.n_times, self.hp.kl_sigma)
        log_p = torch.log_softmax(logits, dim=-1)
        kl = F.kl_div(log_p, log_q, log_target=True, reduction="batchmean")
        return kl + self.hp.mse_weight * mse
