"""Named, versioned search spaces, looked up by name like the models are.

A space is an Optuna define-by-run function: it calls ``trial.suggest_*`` with names that ARE
the flat ``TrainConfig`` keys (``"lr"``, ``"model.head_ratio"``) and returns the constant flat
keys (``{"model": "eegnex"}``). That is exactly what Ray's ``OptunaSearch(space=fn)`` takes:
each trial's config is the suggested values merged with the returned constants, so it feeds
``TrainConfig.from_flat`` without any renaming layer that could drift out of sync.

The registry is keyed by name alone; ``version`` is bumped whenever a space's parameters or
ranges change, so results tagged with ``SearchSpace.label`` stay comparable only within one
version.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna

from eegtune.errors import ConfigError

__all__ = [
    "DefineFn",
    "SearchSpace",
    "get_space",
    "list_space_names",
    "list_spaces",
    "register_space",
]

DefineFn = Callable[[optuna.Trial], dict[str, Any]]

CHALLENGES = (1, 2)


@dataclass(frozen=True)
class SearchSpace:
    name: str
    version: int
    description: str
    challenges: tuple[int, ...]
    define: DefineFn

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("_", "").isalnum():
            raise ConfigError(f"space name must be a non-empty identifier, got {self.name!r}")
        if self.version < 1:
            raise ConfigError(f"space {self.name!r}: version must be >= 1, got {self.version}")
        challenges = tuple(self.challenges)
        if not challenges or any(c not in CHALLENGES for c in challenges):
            raise ConfigError(
                f"space {self.name!r}: challenges must be a non-empty subset of {CHALLENGES}, "
                f"got {self.challenges!r}"
            )
        if not callable(self.define):
            raise TypeError(f"space {self.name!r}: define must be callable")
        # Normalised so a list passed by a caller still hashes and compares as a tuple.
        object.__setattr__(self, "challenges", challenges)

    @property
    def label(self) -> str:
        """``name/vN``: what a result should record so it can be matched to its ranges."""
        return f"{self.name}/v{self.version}"

    def supports(self, challenge: int) -> bool:
        return challenge in self.challenges

    def __call__(self, trial: optuna.Trial) -> dict[str, Any]:
        # Lets the space itself be passed where a define-by-run function is expected.
        return self.define(trial)


_REGISTRY: dict[str, SearchSpace] = {}


def register_space(space: SearchSpace, *, replace: bool = False) -> SearchSpace:
    """Add ``space`` to the registry and return it; a taken name raises unless ``replace``."""
    if not isinstance(space, SearchSpace):
        raise TypeError(f"register_space expects a SearchSpace, got {space!r}")
    existing = _REGISTRY.get(space.name)
    if existing is not None and existing is not space and not replace:
        raise ConfigError(f"search space {space.name!r} is already registered ({existing.label})")
    _REGISTRY[space.name] = space
    return space


def list_space_names() -> list[str]:
    return sorted(_REGISTRY)


def list_spaces(challenge: int | None = None) -> list[SearchSpace]:
    """All registered spaces by name, or only those valid for ``challenge``."""
    spaces = [_REGISTRY[name] for name in list_space_names()]
    if challenge is None:
        return spaces
    return [space for space in spaces if space.supports(challenge)]


def get_space(name: str) -> SearchSpace:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(
            f"unknown search space {name!r}; valid choices: {list_space_names()}"
        ) from None
