"""The registered spaces: one per tuned architecture, plus the architecture-choosing zoo.

The zoo is split per challenge (``zoo`` for challenge 1, ``zoo_c2`` for challenge 2) rather
than taking the challenge as an argument: Ray's ``OptunaSearch`` calls a one-argument
define-by-run function, and the set of architectures is part of the space's identity (a
study's ``model`` categorical must keep the same choices for every trial). The CLI knows the
challenge, so ``zoo_for(challenge)`` picks the right one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna

from eegtune.errors import ConfigError
from eegtune.models import get_model_class
from eegtune.search_spaces.registry import DefineFn, SearchSpace, register_space
from eegtune.search_spaces.subspaces import ARCHITECTURES, suggest_recipe

__all__ = [
    "DENSE_ATTENTION",
    "EEGNEX_RECIPE",
    "SOFTARGMAX_TCN",
    "SPARSE_ATTENTION",
    "ZOO",
    "ZOO_C2",
    "ZOO_CANDIDATES",
    "architecture_space",
    "make_zoo_space",
    "zoo_for",
    "zoo_models",
]

# Every tuned architecture, in the order the zoo offers them: dense_attention is there
# only as the control for sparse_attention (same backbone, full attention); the
# closed-form baselines are fitted, not tuned.
ZOO_CANDIDATES = tuple(ARCHITECTURES)


@dataclass(frozen=True)
class ArchitectureSpace:
    """One architecture's space: its own parameters and the optimiser recipe. A module-level
    class rather than a closure, so Ray Tune can pickle the searcher that holds it."""

    model: str

    def __call__(self, trial: optuna.Trial) -> dict[str, Any]:
        ARCHITECTURES[self.model](trial)
        suggest_recipe(trial)
        return {"model": self.model}


@dataclass(frozen=True)
class ZooSpace:
    """Define-by-run over the architecture, then only that architecture's parameters."""

    models: tuple[str, ...]

    def __call__(self, trial: optuna.Trial) -> dict[str, Any]:
        model = trial.suggest_categorical("model", self.models)
        ARCHITECTURES[model](trial)
        suggest_recipe(trial)
        return {}  # "model" is searched here, so nothing is constant


def architecture_space(model: str) -> DefineFn:
    if model not in ARCHITECTURES:
        raise ConfigError(f"no tuned architecture {model!r}; there are {list(ARCHITECTURES)}")
    return ArchitectureSpace(model)


def zoo_models(challenge: int) -> tuple[str, ...]:
    """The zoo's architectures that support ``challenge``, read from the model classes."""
    return tuple(m for m in ZOO_CANDIDATES if challenge in get_model_class(m).challenges)


def make_zoo_space(challenge: int) -> DefineFn:
    """The zoo of every tuned architecture that supports ``challenge``."""
    models = zoo_models(challenge)
    if not models:
        raise ConfigError(f"no zoo architecture supports challenge {challenge}")
    return ZooSpace(models)


def _challenges_of(model: str) -> tuple[int, ...]:
    return tuple(get_model_class(model).challenges)


# Version 2 of the older spaces: no weight decay on norms and biases (all of them), and
# learning rates per parameter group with a warm-up (the attention models, in their own
# spaces and in the zoo). dense_attention's own space starts at version 1 with both.
SPARSE_ATTENTION = register_space(
    SearchSpace(
        name="sparse_attention",
        version=2,
        description=(
            "CNN + grouped self-attention: head_ratio (1 group = dense .. 25 groups), pattern, "
            "widths, depth, dropout, the attention and head groups' learning-rate "
            "multipliers, warm-up, and the optimiser recipe"
        ),
        challenges=_challenges_of("sparse_attention"),
        define=architecture_space("sparse_attention"),
    )
)

DENSE_ATTENTION = register_space(
    SearchSpace(
        name="dense_attention",
        version=1,
        description=(
            "the control for sparse_attention: the same backbone with full attention, "
            "the same group learning rates, warm-up and optimiser recipe"
        ),
        challenges=_challenges_of("dense_attention"),
        define=architecture_space("dense_attention"),
    )
)

SOFTARGMAX_TCN = register_space(
    SearchSpace(
        name="softargmax_tcn",
        version=2,
        description=(
            "soft-argmax TCN (response time only): widths, kernel, depth, dropout, "
            "KL or MSE loss (kl_sigma and mse_weight with KL only), and the optimiser recipe"
        ),
        challenges=_challenges_of("softargmax_tcn"),
        define=architecture_space("softargmax_tcn"),
    )
)

EEGNEX_RECIPE = register_space(
    SearchSpace(
        name="eegnex_recipe",
        version=2,
        description=(
            "starter-kit EEGNeX at braindecode's architecture: dropout, max-norm limits, "
            "and the optimiser recipe"
        ),
        challenges=_challenges_of("eegnex"),
        define=architecture_space("eegnex"),
    )
)

ZOO = register_space(
    SearchSpace(
        name="zoo",
        version=2,
        description=(
            f"architecture search for challenge 1 over {list(zoo_models(1))}, each with its "
            "own conditional parameters, and the optimiser recipe"
        ),
        challenges=(1,),
        define=make_zoo_space(1),
    )
)

ZOO_C2 = register_space(
    SearchSpace(
        name="zoo_c2",
        version=2,
        description=(
            f"architecture search for challenge 2 over {list(zoo_models(2))}, each with its "
            "own conditional parameters, and the optimiser recipe"
        ),
        challenges=(2,),
        define=make_zoo_space(2),
    )
)

_ZOO_BY_CHALLENGE = {1: ZOO, 2: ZOO_C2}


def zoo_for(challenge: int) -> SearchSpace:
    """The zoo space for ``challenge`` (``zoo`` or ``zoo_c2``)."""
    try:
        return _ZOO_BY_CHALLENGE[challenge]
    except KeyError:
        raise ConfigError(f"challenge must be one of {sorted(_ZOO_BY_CHALLENGE)}") from None
