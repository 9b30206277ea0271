"""The model contract's parameter groups: every trainable parameter in exactly one."""

from __future__ import annotations

import pytest
from torch import nn

from eegtune.models import EEGModel, create_model, list_models
from eegtune.models.attention_backbone import PARAM_GROUPS
from tests.models.conftest import SMALL_SHAPE, TINY

ATTENTION = ("sparse_attention", "dense_attention")


def _covers_each_parameter_once(model: EEGModel) -> dict[str, list[nn.Parameter]]:
    groups = model.param_groups()
    grouped = [id(p) for params in groups.values() for p in params]
    trainable = [id(p) for p in model.parameters() if p.requires_grad]
    assert len(grouped) == len(set(grouped)), "a parameter is in two groups"
    assert sorted(grouped) == sorted(trainable), "a trainable parameter is in no group"
    return groups


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("size", ["tiny", "default"])
def test_every_architectures_groups_cover_every_trainable_parameter_once(name, size):
    params = TINY[name] if size == "tiny" else {}
    groups = _covers_each_parameter_once(create_model(name, **SMALL_SHAPE, **params))
    if name in ATTENTION:
        assert list(groups) == ["front_end", "attention", "head"]  # forward order
        assert all(groups.values())
    else:  # one group; the closed-form baselines have nothing to train
        assert list(groups) == ["all"]


@pytest.mark.parametrize("name", ATTENTION)
@pytest.mark.parametrize("n_layers", [1, 3])
def test_attention_groups_hold_the_parts_they_name(name, n_layers):
    model = create_model(name, **SMALL_SHAPE, **{**TINY[name], "n_layers": n_layers})
    groups = _covers_each_parameter_once(model)
    owner = {id(p): g for g, params in groups.items() for p in params}
    for path, param in model.named_parameters():
        top = path.split(".", 1)[0]
        expected = next(g for g, children in PARAM_GROUPS.items() if top in children)
        assert owner[id(param)] == expected, path
    # Every transformer block's attention projections learn with the attention group.
    blocks = [id(p) for p in model.blocks.parameters()]
    assert len(blocks) > 0 and all(owner[b] == "attention" for b in blocks)
    assert {id(p) for p in model.head.parameters()} == {id(p) for p in groups["head"]}


def test_a_frozen_parameter_is_in_no_group():
    model = create_model("sparse_attention", **SMALL_SHAPE, **TINY["sparse_attention"])
    model.pos_embedding.requires_grad_(False)
    groups = _covers_each_parameter_once(model)
    assert all(p is not model.pos_embedding for params in groups.values() for p in params)


def test_a_parameter_outside_every_named_group_is_refused():
    model = create_model("sparse_attention", **SMALL_SHAPE, **TINY["sparse_attention"])
    model.extra = nn.Linear(2, 2)  # a layer added without a group
    with pytest.raises(ValueError, match=r"parameter 'extra.weight' is in none of the groups"):
        model.param_groups()
    model.extra.requires_grad_(False)  # frozen: nothing to optimise, nothing to group
    _covers_each_parameter_once(model)
