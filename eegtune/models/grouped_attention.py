"""Multi-head self-attention, dense and grouped (sparse), both on scaled_dot_product_attention.

``GroupedSelfAttention`` splits the N tokens into ``n_groups`` fixed groups and lets each token
attend only inside its group: the attention core costs O(N·g·d) instead of O(N²·d), with g the
group size. The grouping is a deterministic function of N (never a random permutation), so eval
outputs are reproducible and a trained model means the same thing at inference time.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["PATTERNS", "DenseSelfAttention", "GroupedSelfAttention", "group_layout"]

PATTERNS = ("blocked", "strided")


class DenseSelfAttention(nn.Module):
    """Standard multi-head self-attention on (B, N, d_model) tokens.

    Weight layout matches ``nn.MultiheadAttention`` (one packed in-projection, q|k|v rows, heads
    contiguous within each), so weights can be copied across for testing.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, bias: bool = True) -> None:
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
        self.d_model = d_model
        self.n_heads = n_heads
        self.d_head = d_model // n_heads
        self.dropout = dropout
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)

    def _dropout_p(self) -> float:
        return self.dropout if self.training else 0.0

    def _heads(self, qkv: Tensor, batch: int, length: int) -> tuple[Tensor, Tensor, Tensor]:
        # (batch, length, 3·d) -> three (batch, heads, length, d_head) strided views, no copy.
        q, k, v = qkv.view(batch, length, 3, self.n_heads, self.d_head).unbind(2)
        return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        q, k, v = self._heads(self.qkv(x), b, n)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self._dropout_p())
        return self.out_proj(out.transpose(1, 2).reshape(b, n, d))


def group_layout(n_tokens: int, n_groups: int, pattern: str) -> tuple[Tensor, Tensor, Tensor]:
    """Deterministic token -> group assignment.

    Returns ``(gather, scatter, key_mask)``:
      * gather (G·g,): token index for each padded slot, group-major; pad slots repeat a real
        token of the same group (their keys are masked and their outputs dropped, so the value
        does not matter, and repeating avoids a concatenated zero row).
      * scatter (N,): slot of each token, to put outputs back in the original order.
      * key_mask (G, g) bool, True where the slot holds a real token.

    Group sizes differ by at most one (like ``numpy.array_split``), so padding is at most one
    slot per group and no group is ever empty.
    """
    if pattern not in PATTERNS:
        raise ValueError(f"pattern must be one of {list(PATTERNS)}, got {pattern!r}")
    n_groups = max(1, min(n_groups, n_tokens))
    g = math.ceil(n_tokens / n_groups)
    n_full = n_tokens - (g - 1) * n_groups  # groups holding g tokens; the rest hold g - 1
    group = torch.arange(n_groups).unsqueeze(1)  # (G, 1)
    pos = torch.arange(g).unsqueeze(0)  # (1, g)
    size = torch.where(group < n_full, g, g - 1)
    valid = pos < size
    last = torch.minimum(pos, size - 1)  # clamp pad slots onto the group's last real token
    if pattern == "blocked":
        start = group * (g - 1) + torch.clamp(group, max=n_full)
        gather = start + last
    else:  # strided: token i -> group i % G, position i // G
        gather = last * n_groups + group
    gather = gather.reshape(-1)
    scatter = torch.empty(n_tokens, dtype=torch.long)
    slots = torch.arange(n_groups * g)
    real = valid.reshape(-1)
    scatter[gather[real]] = slots[real]
    return gather, scatter, valid


class GroupedSelfAttention(DenseSelfAttention):
    """Sparse multi-head self-attention: each token attends only within its fixed group.

    ``pattern="blocked"``: contiguous chunks (local attention).
    ``pattern="strided"``: token i goes to group i % n_groups (dilated, window-wide attention).
    With ``n_groups=1`` this is exactly ``DenseSelfAttention`` (same parameters, same output).
    N not divisible by n_groups is handled by padding each group to a common size g with a key
    mask, so padded slots never receive attention weight and their outputs are discarded.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        n_groups: int,
        pattern: str = "blocked",
        dropout: float = 0.0,
        bias: bool = True,
    ) -> None:
        super().__init__(d_model, n_heads, dropout=dropout, bias=bias)
        if n_groups < 1:
            raise ValueError(f"n_groups must be >= 1, got {n_groups}")
        if pattern not in PATTERNS:
            raise ValueError(f"pattern must be one of {list(PATTERNS)}, got {pattern!r}")
        self.n_groups = n_groups
        self.pattern = pattern
        # Layouts depend only on N; cached per (N, device) as plain attributes, not buffers,
        # so the state_dict holds exactly the parameters of the dense layer.
        self._layouts: dict[tuple[int, torch.device], tuple[Tensor, Tensor, Tensor | None]] = {}

    def extra_repr(self) -> str:
        return f"n_heads={self.n_heads}, n_groups={self.n_groups}, pattern={self.pattern!r}"

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> GroupedSelfAttention:
        # .to()/.cuda()/.cpu() go through here: entries for the old device would keep its
        # memory alive, and the cache is cheap to rebuild on the new one.
        self._layouts.clear()
        return super()._apply(fn, recurse)

    def __getstate__(self) -> dict[str, Any]:
        # A pickled/deep-copied module (Ray object store, torch.save(model)) must not carry
        # CUDA tensors in the cache: they could not be unpickled on a CPU-only worker.
        state = super().__getstate__()
        state["_layouts"] = {}
        return state

    def _layout(self, n: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor | None]:
        key = (n, device)
        if key not in self._layouts:
            # A first call under inference_mode must not cache inference tensors: autograd
            # refuses them in a later training step.
            with torch.inference_mode(False):
                gather, scatter, valid = group_layout(n, self.n_groups, self.pattern)
                mask = None if bool(valid.all()) else valid.to(device)
                self._layouts[key] = (gather.to(device), scatter.to(device), mask)
        return self._layouts[key]

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        n_groups = min(self.n_groups, n)
        if n_groups == 1:
            return super().forward(x)
        g = math.ceil(n / n_groups)
        # Blocked with equal groups is a pure reshape of the token axis: no gather, no mask.
        regroup = self.pattern == "strided" or n % n_groups != 0
        scatter: Tensor | None = None
        mask: Tensor | None = None
        if regroup:
            gather, scatter, valid = self._layout(n, x.device)
            x = x.index_select(1, gather)
            if valid is not None:
                # (G, g) -> (b·G, 1, 1, g): key mask broadcast over heads and query rows.
                mask = valid.unsqueeze(0).expand(b, -1, -1).reshape(b * n_groups, 1, 1, g)
        qkv = self.qkv(x)  # (b, G·g, 3d); projecting after the gather keeps the copy 3x smaller
        q, k, v = self._heads(qkv, b * n_groups, g)  # (b·G, heads, g, d_head)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self._dropout_p())
        out = out.transpose(1, 2).reshape(b, n_groups * g, d)
        if scatter is not None:
            out = out.index_select(1, scatter)  # drop pad slots, restore token order
        return self.out_proj(out)
