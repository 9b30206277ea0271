"""``dense_attention``: the control for ``sparse_attention`` — same backbone, full attention."""

from __future__ import annotations

from torch import nn

from eegtune.models.attention_backbone import AttentionRegressor
from eegtune.models.grouped_attention import DenseSelfAttention
from eegtune.models.registry import register_model

__all__ = ["DenseAttentionNet"]


@register_model("dense_attention")
class DenseAttentionNet(AttentionRegressor):
    def make_attention(self) -> nn.Module:
        return DenseSelfAttention(self.hp.d_model, self.hp.n_heads, dropout=self.hp.dropout)
