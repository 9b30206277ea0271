"""GroupedSelfAttention: fixed groups, exact dense equivalence, masking of uneven groups."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from eegtune.models import create_model
from eegtune.models.grouped_attention import (
    DenseSelfAttention,
    GroupedSelfAttention,
    group_layout,
)


def expected_groups(n_tokens: int, n_groups: int, pattern: str) -> list[list[int]]:
    """Independent statement of the two patterns."""
    n_groups = min(n_groups, n_tokens)
    if pattern == "blocked":
        return [chunk.tolist() for chunk in np.array_split(np.arange(n_tokens), n_groups)]
    return [list(range(j, n_tokens, n_groups)) for j in range(n_groups)]


def copy_to_mha(layer: DenseSelfAttention) -> nn.MultiheadAttention:
    mha = nn.MultiheadAttention(layer.d_model, layer.n_heads, batch_first=True)
    with torch.no_grad():
        mha.in_proj_weight.copy_(layer.qkv.weight)
        mha.in_proj_bias.copy_(layer.qkv.bias)
        mha.out_proj.weight.copy_(layer.out_proj.weight)
        mha.out_proj.bias.copy_(layer.out_proj.bias)
    return mha.eval()


@pytest.mark.parametrize("pattern", ["blocked", "strided"])
@pytest.mark.parametrize(("n_tokens", "n_groups"), [(12, 4), (10, 4), (9, 4), (50, 6), (3, 5)])
def test_layout_matches_pattern_definition(pattern: str, n_tokens: int, n_groups: int) -> None:
    gather, scatter, valid = group_layout(n_tokens, n_groups, pattern)
    slots = gather.view(valid.shape)
    got = [row[mask].tolist() for row, mask in zip(slots, valid, strict=True)]
    assert got == expected_groups(n_tokens, n_groups, pattern)
    # scatter puts every token back exactly once.
    assert torch.equal(gather[scatter], torch.arange(n_tokens))
    # Uneven groups are padded by at most one slot.
    assert (valid.sum(1).max() - valid.sum(1).min()) <= 1


@pytest.mark.parametrize("pattern", ["blocked", "strided"])
def test_single_group_is_exactly_dense_multihead_attention(pattern: str) -> None:
    torch.manual_seed(0)
    layer = GroupedSelfAttention(32, 4, n_groups=1, pattern=pattern).eval()
    mha = copy_to_mha(layer)
    x = torch.randn(3, 37, 32)
    with torch.no_grad():
        expected, _ = mha(x, x, x, need_weights=False)
        torch.testing.assert_close(layer(x), expected, atol=1e-5, rtol=1e-5)
        dense = DenseSelfAttention(32, 4).eval()
        dense.load_state_dict(layer.state_dict())
        torch.testing.assert_close(dense(x), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pattern", ["blocked", "strided"])
@pytest.mark.parametrize(("n_tokens", "n_groups"), [(48, 6), (50, 6), (7, 3), (50, 50)])
def test_groups_equal_dense_attention_run_on_each_group(pattern, n_tokens, n_groups) -> None:
    torch.manual_seed(1)
    grouped = GroupedSelfAttention(16, 2, n_groups=n_groups, pattern=pattern).eval()
    dense = DenseSelfAttention(16, 2).eval()
    dense.load_state_dict(grouped.state_dict())
    x = torch.randn(2, n_tokens, 16)
    expected = torch.empty_like(x)
    with torch.no_grad():
        for members in expected_groups(n_tokens, n_groups, pattern):
            expected[:, members] = dense(x[:, members])
        got = grouped(x)
    # If padded slots leaked into the softmax, the short groups would not match.
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_tokens_outside_a_group_have_no_influence() -> None:
    torch.manual_seed(2)
    layer = GroupedSelfAttention(16, 4, n_groups=5, pattern="strided").eval()
    x = torch.randn(1, 23, 16)
    y = x.clone()
    y[:, 1::5] += 10.0  # group 1 only
    with torch.no_grad():
        diff = (layer(x) - layer(y)).abs().amax(-1).squeeze(0)
    in_group = torch.zeros(23, dtype=torch.bool)
    in_group[1::5] = True
    assert (diff[~in_group] == 0).all()
    assert (diff[in_group] > 1e-3).all()


@pytest.mark.parametrize("pattern", ["blocked", "strided"])
def test_eval_is_deterministic_and_training_backpropagates(pattern: str) -> None:
    torch.manual_seed(3)
    layer = GroupedSelfAttention(16, 2, n_groups=4, pattern=pattern, dropout=0.5)
    x = torch.randn(2, 50, 16, requires_grad=True)
    layer.eval()
    with torch.inference_mode():
        assert torch.equal(layer(x.detach()), layer(x.detach()))
    layer.train()
    layer(x).square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in layer.parameters())


def test_dense_and_grouped_reject_bad_arguments() -> None:
    with pytest.raises(ValueError, match="divisible"):
        DenseSelfAttention(30, 4)
    with pytest.raises(ValueError, match="pattern"):
        GroupedSelfAttention(16, 2, n_groups=2, pattern="random")
    with pytest.raises(ValueError, match="n_groups"):
        GroupedSelfAttention(16, 2, n_groups=0)


@pytest.mark.parametrize(("head_ratio", "n_groups"), [(0.1, 5), (0.02, 1), (0.0, 1), (1.0, 50)])
def test_sparse_model_group_count(head_ratio: float, n_groups: int) -> None:
    model = create_model("sparse_attention", head_ratio=head_ratio)
    assert model.seq_len == 50
    assert model.n_groups == n_groups
    assert all(block.attention.n_groups == n_groups for block in model.blocks)


def test_sparse_model_with_one_group_equals_dense_model(raw_windows) -> None:
    torch.manual_seed(4)
    sparse = create_model("sparse_attention", head_ratio=0.01).eval()  # 1 group of 50 tokens
    dense = create_model("dense_attention").eval()
    assert sparse.state_dict().keys() == dense.state_dict().keys()
    dense.load_state_dict(sparse.state_dict())
    x = raw_windows(2)
    with torch.inference_mode():
        torch.testing.assert_close(sparse(x), dense(x), atol=1e-5, rtol=1e-5)
        sparse_grouped = create_model("sparse_attention", head_ratio=0.1).eval()
        sparse_grouped.load_state_dict(sparse.state_dict())
        assert not torch.allclose(sparse_grouped(x), dense(x), atol=1e-4)
