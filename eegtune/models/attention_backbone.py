"""CNN front end + channel/temporal attention + transformer blocks, shared by the attention models.

``sparse_attention`` and ``dense_attention`` differ only in the self-attention layer they plug
in (``AttentionRegressor.make_attention``), so any accuracy/speed difference between them is due
to the attention pattern alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from eegtune.models.base import EEGModel, ModelHparams, check_positive

__all__ = [
    "PARAM_GROUPS",
    "AttentionHparams",
    "AttentionRegressor",
    "ConvFrontEnd",
    "SqueezeExcite",
]


@dataclass(frozen=True)
class AttentionHparams(ModelHparams):
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    temporal_kernel: int = 25  # 250 ms at 100 Hz: resolves delta..beta rhythms
    pool: int = 4  # tokens = n_times // pool; 200 samples -> 50 tokens of 40 ms
    ff_mult: int = 2
    se_reduction: int = 4
    head_hidden: int = 32
    dropout: float = 0.1

    def validate(self) -> None:
        sizes = ("d_model", "n_heads", "n_layers", "temporal_kernel", "pool", "ff_mult")
        for name in (*sizes, "se_reduction", "head_hidden"):
            check_positive(name, getattr(self, name))
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"hyperparameter 'dropout' must be in [0, 1), got {self.dropout}")
        if self.d_model % self.n_heads != 0:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}")


# Parameter groups, in forward order, for per-group learning rates (``lr_mult.<group>``):
# the convolutional tokeniser; everything that mixes tokens or features by attention
# (channel squeeze-excitation, the learned position residual, the transformer blocks, their
# final norm and the temporal attention pool); and the regression MLP.
PARAM_GROUPS = {
    "front_end": ("front_end",),
    "attention": (
        "channel_attention",
        "pos_embedding",
        "blocks",
        "final_norm",
        "temporal_attention",
    ),
    "head": ("head",),
}


def sinusoidal_positions(n: int, d: int) -> Tensor:
    """(1, n, d) sine/cosine position code with unit amplitude (Vaswani et al. 2017)."""
    pos = torch.arange(n, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
    code = torch.zeros(n, d)
    code[:, 0::2] = torch.sin(pos * freq)
    code[:, 1::2] = torch.cos(pos * freq[: d // 2])
    return code.unsqueeze(0)


class ConvFrontEnd(nn.Module):
    """(B, C, T) -> (B, d_model, T // pool) tokens: spatial filters, temporal filters, pooling.

    Spatial before temporal: the two linear maps commute, and mixing the electrodes down to
    d_model virtual channels first avoids an EEGNet-style (B, F, C, T) intermediate that is
    C times larger (it made the front end ~10x slower on CPU).
    """

    def __init__(self, n_chans: int, d_model: int, kernel: int, pool: int, dropout: float) -> None:
        super().__init__()
        self.spatial = nn.Sequential(
            nn.Conv1d(n_chans, d_model, 1, bias=False),
            nn.BatchNorm1d(d_model),
        )
        self.temporal = nn.Sequential(
            nn.Conv1d(d_model, d_model, kernel, padding="same", groups=d_model, bias=False),
            nn.BatchNorm1d(d_model),
            nn.ELU(),
            nn.AvgPool1d(pool),
            nn.Dropout(dropout),
        )
        self.mix = nn.Sequential(
            nn.Conv1d(d_model, d_model, 5, padding=2, bias=False),
            nn.BatchNorm1d(d_model),
            nn.ELU(),
        )

    def forward(self, z: Tensor) -> Tensor:
        return self.mix(self.temporal(self.spatial(z)))


class SqueezeExcite(nn.Module):
    """Channel attention: gate each feature by a function of its mean over the sequence."""

    def __init__(self, d_model: int, reduction: int) -> None:
        super().__init__()
        hidden = max(1, d_model // reduction)
        self.gate = nn.Sequential(
            nn.Linear(d_model, hidden), nn.ReLU(), nn.Linear(hidden, d_model), nn.Sigmoid()
        )

    def forward(self, x: Tensor) -> Tensor:  # (B, N, d)
        return x * self.gate(x.mean(dim=1)).unsqueeze(1)


class TemporalAttentionPool(nn.Module):
    """Learned softmax weighting over time -> one vector per window."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.score = nn.Linear(d_model, 1)

    def forward(self, x: Tensor) -> Tensor:  # (B, N, d) -> (B, d)
        weights = torch.softmax(self.score(x), dim=1)
        return (weights * x).sum(dim=1)


class TransformerBlock(nn.Module):
    """Pre-norm residual block: attention, then a position-wise feed-forward net."""

    def __init__(self, attention: nn.Module, d_model: int, ff_mult: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.attention = attention
        self.norm2 = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(
            nn.Linear(d_model, ff_mult * d_model),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(ff_mult * d_model, d_model),
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop(self.attention(self.norm1(x)))
        return x + self.drop(self.ff(self.norm2(x)))


class AttentionRegressor(EEGModel):
    """Shared backbone; subclasses choose the self-attention layer via ``make_attention``."""

    Hparams = AttentionHparams
    hp: AttentionHparams

    def __init__(
        self,
        n_chans: int = 129,
        n_times: int = 200,
        n_outputs: int = 1,
        sfreq: float = 100.0,
        **hparams: object,
    ) -> None:
        super().__init__(n_chans, n_times, n_outputs, sfreq, **hparams)
        hp = self.hp
        self.seq_len = self.n_times // hp.pool
        if self.seq_len < 1:
            raise ValueError(f"n_times={self.n_times} is shorter than pool={hp.pool}")
        self.front_end = ConvFrontEnd(
            self.n_net_chans, hp.d_model, hp.temporal_kernel, hp.pool, hp.dropout
        )
        self.channel_attention = SqueezeExcite(hp.d_model, hp.se_reduction)
        # Absolute position matters for response time (the press sits at RT - 0.5 s), and
        # attention alone is permutation-equivariant. A fixed unit-scale sinusoidal code
        # makes position readable from the first step (a small random learned embedding
        # was drowned by the tokens and never learned in a short CPU budget); a learned
        # residual, zero at start, can refine it.
        self.register_buffer(
            "pos_code", sinusoidal_positions(self.seq_len, hp.d_model), persistent=False
        )
        self.pos_embedding = nn.Parameter(torch.zeros(1, self.seq_len, hp.d_model))
        self.blocks = nn.ModuleList(
            TransformerBlock(self.make_attention(), hp.d_model, hp.ff_mult, hp.dropout)
            for _ in range(hp.n_layers)
        )
        self.final_norm = nn.LayerNorm(hp.d_model)
        self.temporal_attention = TemporalAttentionPool(hp.d_model)
        self.head = nn.Sequential(
            nn.Linear(hp.d_model, hp.head_hidden),
            nn.GELU(),
            nn.Dropout(hp.dropout),
            nn.Linear(hp.head_hidden, self.n_outputs),
        )

    def make_attention(self) -> nn.Module:
        raise NotImplementedError

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        return self.groups_of_children(PARAM_GROUPS)

    def forward_normalized(self, z: Tensor) -> Tensor:
        tokens = self.front_end(z).transpose(1, 2)  # (B, N, d)
        tokens = self.channel_attention(tokens) + self.pos_code + self.pos_embedding
        for block in self.blocks:
            tokens = block(tokens)
        return self.head(self.temporal_attention(self.final_norm(tokens)))
