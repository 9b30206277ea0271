"""``sparse_attention``: the CNN + attention regressor with fixed grouped (sparse) self-attention.

This is the project's starting design done right. The public
``LightweightResponseTimeCNNWithAttention`` drew a fresh random token pairing on every forward
pass, inference included, so its predictions were not reproducible and training optimised an
objective that inference did not use. Here the groups are a fixed function of the sequence
length (``pattern``), every head has its own Q/K/V slices, and uneven group sizes are masked.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from eegtune.models.attention_backbone import AttentionHparams, AttentionRegressor
from eegtune.models.base import check_choice
from eegtune.models.grouped_attention import PATTERNS, GroupedSelfAttention
from eegtune.models.registry import register_model

__all__ = ["SparseAttentionHparams", "SparseAttentionNet"]


@dataclass(frozen=True)
class SparseAttentionHparams(AttentionHparams):
    # n_groups = max(1, round(head_ratio * seq_len)): 0.1 -> 5 groups of 10 tokens (400 ms
    # each) at the default 50 tokens. head_ratio <= 1 / seq_len gives dense attention.
    head_ratio: float = 0.1
    pattern: str = "blocked"

    def validate(self) -> None:
        super().validate()
        if not 0.0 <= self.head_ratio <= 1.0:
            raise ValueError(
                f"hyperparameter 'head_ratio' must be in [0, 1], got {self.head_ratio}"
            )
        check_choice("pattern", self.pattern, PATTERNS)


@register_model("sparse_attention")
class SparseAttentionNet(AttentionRegressor):
    Hparams = SparseAttentionHparams
    hp: SparseAttentionHparams

    @property
    def n_groups(self) -> int:
        return max(1, round(self.hp.head_ratio * self.seq_len))

    def make_attention(self) -> nn.Module:
        hp = self.hp
        return GroupedSelfAttention(
            hp.d_model, hp.n_heads, self.n_groups, pattern=hp.pattern, dropout=hp.dropout
        )
