"""The registry: lookup, listing, registration rules, SearchSpace validation."""

from __future__ import annotations

from typing import Any

import optuna
import pytest

from eegtune.search_spaces import (
    SearchSpace,
    get_space,
    list_space_names,
    list_spaces,
    register_space,
    zoo_for,
)
from eegtune.search_spaces import registry as registry_module

EXPECTED = {"eegnex_recipe", "softargmax_tcn", "sparse_attention", "zoo", "zoo_c2"}


def _constant_space(trial: optuna.Trial) -> dict[str, Any]:
    trial.suggest_float("lr", 1e-3, 1e-2)
    return {"model": "mean"}


@pytest.fixture
def scratch_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    # Registration is global; a copy keeps test spaces out of the real registry.
    monkeypatch.setattr(registry_module, "_REGISTRY", dict(registry_module._REGISTRY))


def test_builtin_spaces_are_registered_at_version_1() -> None:
    assert set(list_space_names()) >= EXPECTED
    for space in list_spaces():
        assert get_space(space.name) is space
        assert space.version >= 1
        assert space.label == f"{space.name}/v{space.version}"
    assert [s.name for s in list_spaces()] == sorted(s.name for s in list_spaces())


def test_unknown_space_raises_with_valid_names() -> None:
    with pytest.raises(ValueError, match="unknown search space 'nope'") as info:
        get_space("nope")
    for name in EXPECTED:
        assert name in str(info.value)


def test_list_spaces_filters_by_challenge() -> None:
    c1 = {s.name for s in list_spaces(challenge=1)}
    c2 = {s.name for s in list_spaces(challenge=2)}
    assert {"softargmax_tcn", "zoo", "sparse_attention", "eegnex_recipe"} <= c1
    assert "zoo_c2" not in c1
    assert {"zoo_c2", "sparse_attention", "eegnex_recipe"} <= c2
    assert not {"softargmax_tcn", "zoo"} & c2


def test_zoo_for_picks_the_challenge_zoo() -> None:
    assert zoo_for(1).name == "zoo"
    assert zoo_for(2).name == "zoo_c2"
    with pytest.raises(ValueError, match="challenge"):
        zoo_for(3)


@pytest.mark.usefixtures("scratch_registry")
def test_register_rejects_a_taken_name_unless_replace() -> None:
    first = register_space(SearchSpace("scratch", 1, "test", (1, 2), _constant_space))
    assert get_space("scratch") is first
    assert register_space(first) is first  # re-registering the same object is harmless
    second = SearchSpace("scratch", 2, "test", (1,), _constant_space)
    with pytest.raises(ValueError, match="already registered"):
        register_space(second)
    register_space(second, replace=True)
    assert get_space("scratch").version == 2
    with pytest.raises(TypeError):
        register_space(_constant_space)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"name": ""}, ValueError),
        ({"name": "has space"}, ValueError),
        ({"version": 0}, ValueError),
        ({"challenges": ()}, ValueError),
        ({"challenges": (3,)}, ValueError),
        ({"define": "not callable"}, TypeError),
    ],
)
def test_search_space_validates_its_fields(kwargs: dict[str, Any], error: type) -> None:
    fields = {
        "name": "ok",
        "version": 1,
        "description": "d",
        "challenges": (1,),
        "define": _constant_space,
    }
    with pytest.raises(error):
        SearchSpace(**{**fields, **kwargs})


def test_search_space_is_callable_and_normalises_challenges() -> None:
    space = SearchSpace("ok", 1, "d", [1, 2], _constant_space)  # type: ignore[arg-type]
    assert space.challenges == (1, 2)
    assert space.supports(2) and not space.supports(3)
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    assert space(trial) == {"model": "mean"}
    assert "lr" in trial.params
