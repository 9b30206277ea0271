"""The model contract's parameter groups: every trainable parameter in exactly one."""

from __future__ import annotations

import pytest
from torch import nn

from eegtune.models import EEGModel, create_model, list_models
from tests.models.conftest import SMALL_SHAPE, TINY

ATTENTION = ("sparse_attention", "dense_attention")

# README.md, "Parameter groups": each group, in forward order, and the parameters it holds
# (a name ending in "." is every parameter under that module; otherwise one parameter).
# Written out here, not read from the library, so a group that moves is caught.
_ATTENTION_GROUPS = {
    "front_end": ("front_end.",),
    "attention": (
        "channel_attention.",
        "pos_embedding",
        "blocks.",
        "final_norm.",
        "temporal_attention.",
    ),
    "head": ("head.",),
}
README_GROUPS: dict[str, dict[str, tuple[str, ...]]] = {
    "sparse_attention": _ATTENTION_GROUPS,
    "dense_attention": _ATTENTION_GROUPS,
    "softargmax_tcn": {"all": ("",)},  # the first layer to the last
    "eegnex": {"all": ("",)},
    "mean": {"all": ()},  # fitted in closed form: nothing to train
    "ridge_bandpower": {"all": ()},
}


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


def _readme_parts(groups: dict[str, tuple[str, ...]], path: str) -> list[tuple[str, str]]:
    """The (group, part) rows of the README's table that hold the parameter ``path``."""
    return [
        (g, part)
        for g, parts in groups.items()
        for part in parts
        if (path.startswith(part) if part.endswith(".") or not part else path == part)
    ]


def test_the_readme_table_names_every_architecture():
    assert sorted(README_GROUPS) == sorted(list_models())


@pytest.mark.parametrize("name", sorted(README_GROUPS))
@pytest.mark.parametrize("n_layers", [1, 3])
def test_groups_hold_the_parts_the_readme_table_names(name, n_layers):
    params = {**TINY[name], "n_layers": n_layers} if name in ATTENTION else TINY[name]
    model = create_model(name, **SMALL_SHAPE, **params)
    groups = _covers_each_parameter_once(model)
    want_groups = README_GROUPS[name]
    assert list(groups) == list(want_groups)  # the groups, in forward order
    want: dict[str, set[str]] = {g: set() for g in want_groups}
    used_parts = set()
    for path, _ in model.named_parameters():
        rows = _readme_parts(want_groups, path)
        assert len(rows) == 1, f"{path} is in {len(rows)} rows of the README's table: {rows}"
        (group, part), *_ = rows
        want[group].add(path)
        used_parts.add(part)
    names = {id(p): n for n, p in model.named_parameters()}
    got = {g: {names[id(p)] for p in params} for g, params in groups.items()}
    assert got == want
    # Every part the table names is a real part of the model (no row describes nothing).
    assert used_parts == {p for parts in want_groups.values() for p in parts}
    if name in ATTENTION:
        assert {n for n in got["attention"] if n.startswith("blocks.")} == {
            n for n, _ in model.named_parameters() if n.startswith("blocks.")
        }
        assert {n.split(".")[1] for n in got["attention"] if n.startswith("blocks.")} == {
            str(k) for k in range(n_layers)
        }
        assert "pos_embedding" in got["attention"]
        # The table's ends: the spatial 1×1 convolution opens the front end, and the
        # head runs from the pooled vector's first linear layer to the output layer.
        spatial = model.front_end.spatial[0]
        assert spatial.kernel_size == (1,) and spatial.in_channels == model.n_net_chans
        assert "front_end.spatial.0.weight" in got["front_end"]
        linears = [m for m in model.head if isinstance(m, nn.Linear)]
        assert linears[0].in_features == TINY[name]["d_model"] and linears[-1].out_features == 1


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
