"""Drawing configs from a space outside Ray, and describing what a space searches.

Both use a throwaway in-memory study with a seeded ``RandomSampler``, i.e. the same
``study.ask()`` + define-by-run path Ray's ``OptunaSearch`` takes, so what is printed or tested
here is what a tuning run will see. Distributions are read off real trials
(``trial.distributions``) rather than declared twice, so a description cannot go stale.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from eegtune.errors import ConfigError
from eegtune.search_spaces.registry import SearchSpace, get_space

__all__ = [
    "ParamSummary",
    "SpaceSummary",
    "default_point",
    "describe_space",
    "format_distribution",
    "sample_config",
    "sample_configs",
    "summarize_space",
]


@contextmanager
def _quiet_optuna() -> Iterator[None]:
    # create_study logs "A new study created in memory" at INFO on every call.
    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(previous)


def _resolve(space: SearchSpace | str) -> SearchSpace:
    return get_space(space) if isinstance(space, str) else space


def _ask(study: optuna.Study, space: SearchSpace) -> tuple[optuna.Trial, dict[str, Any]]:
    trial = study.ask()
    constants = space.define(trial)
    # Same merge as Ray's OptunaSearch: the returned constants win over suggested values.
    return trial, {**trial.params, **(constants or {})}


def sample_configs(space: SearchSpace | str, n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` complete flat configs, reproducible from ``seed`` (space name or object)."""
    resolved = _resolve(space)
    with _quiet_optuna():
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
        return [_ask(study, resolved)[1] for _ in range(n)]


def sample_config(space: SearchSpace | str, seed: int) -> dict[str, Any]:
    """One complete flat config, ready for ``TrainConfig.from_flat``."""
    return sample_configs(space, 1, seed)[0]


@dataclass(frozen=True)
class ParamSummary:
    name: str
    distribution: BaseDistribution
    n_present: int  # samples that suggested it; fewer than all means it is conditional


@dataclass(frozen=True)
class SpaceSummary:
    space: SearchSpace
    n_samples: int
    params: list[ParamSummary]
    constants: dict[str, list[Any]] = field(default_factory=dict)  # key -> values seen

    def distributions(self) -> dict[str, BaseDistribution]:
        return {p.name: p.distribution for p in self.params}

    def keys(self) -> set[str]:
        """Every config key the space sets: its parameters and its constants."""
        return {p.name for p in self.params} | set(self.constants)


def summarize_space(space: SearchSpace | str, n_samples: int = 64, seed: int = 0) -> SpaceSummary:
    """Every parameter seen over ``n_samples`` random trials, with its distribution.

    Raises ValueError when one name is suggested with two different distributions: TPE pools
    a name's history across trials, so that would silently mix incompatible observations.
    """
    resolved = _resolve(space)
    distributions: dict[str, BaseDistribution] = {}
    counts: dict[str, int] = {}
    constants: dict[str, list[Any]] = {}
    with _quiet_optuna():
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
        for _ in range(n_samples):
            trial, config = _ask(study, resolved)
            for name, dist in trial.distributions.items():
                seen = distributions.setdefault(name, dist)
                if seen != dist:
                    raise ConfigError(
                        f"space {resolved.label}: parameter {name!r} is suggested with two "
                        f"distributions, {seen} and {dist}"
                    )
                counts[name] = counts.get(name, 0) + 1
            for key in config.keys() - trial.distributions.keys():
                values = constants.setdefault(key, [])
                if config[key] not in values:
                    values.append(config[key])
    params = [ParamSummary(name, dist, counts[name]) for name, dist in distributions.items()]
    return SpaceSummary(resolved, n_samples, params, constants)


def _num(value: float) -> str:
    return f"{value:g}"


def format_distribution(dist: BaseDistribution) -> str:
    """``float [0.0001, 0.01] log``, ``int [3, 9] step 2``, ``categorical [kl, mse]``."""
    if isinstance(dist, CategoricalDistribution):
        return f"categorical [{', '.join(str(c) for c in dist.choices)}]"
    if isinstance(dist, FloatDistribution | IntDistribution):
        kind = "float" if isinstance(dist, FloatDistribution) else "int"
        text = f"{kind} [{_num(dist.low)}, {_num(dist.high)}]"
        if dist.log:
            text += " log"
        if dist.step is not None and not (kind == "int" and dist.step == 1):
            text += f" step {_num(dist.step)}"
        return text
    return repr(dist)


def describe_space(space: SearchSpace | str, n_samples: int = 64, seed: int = 0) -> str:
    """Human-readable summary: header, one line per parameter, constants, an example config."""
    summary = summarize_space(space, n_samples=n_samples, seed=seed)
    resolved = summary.space
    challenges = ", ".join(str(c) for c in resolved.challenges)
    lines = [f"{resolved.label} (challenges {challenges}): {resolved.description}"]
    width = max((len(p.name) for p in summary.params), default=0)
    for p in summary.params:
        line = f"  {p.name:<{width}}  {format_distribution(p.distribution)}"
        if p.n_present < summary.n_samples:
            line += f"  (conditional: in {p.n_present}/{summary.n_samples} samples)"
        lines.append(line)
    for key, values in summary.constants.items():
        lines.append(f"  {key:<{width}}  constant {', '.join(map(str, values))}")
    lines.append(f"example (seed {seed}): {sample_config(resolved, seed)}")
    return "\n".join(lines)


def default_point(space: SearchSpace | str) -> dict[str, Any]:
    """The space's parameters at the values eegtune trains with untuned: ``TrainConfig``'s
    defaults, 1.0 for rate multipliers, and the architecture's own (its ``Hparams``),
    wherever the space's ranges hold them (the others are left to the sampler). A
    search's first trial with ``eegtune tune --start-at-defaults``, trained at that
    search's epochs: random start-up draws can all miss where an architecture learns."""
    from eegtune.models.registry import get_model_class
    from eegtune.training.config import LR_MULT_PREFIX, MODEL_PREFIX, TrainConfig

    resolved = _resolve(space)
    summary = summarize_space(resolved)
    models = {str(m) for m in summary.constants.get("model", [])}
    if len(models) != 1:
        raise ConfigError(
            f"space {resolved.name!r} searches the architecture; defaults belong to one "
            f"architecture: start each architecture's own space at its defaults"
        )
    (model,) = models
    defaults = TrainConfig(model=model).to_flat()
    # Every architecture's hyperparameters are its Hparams dataclass, defaults included.
    hparams = dataclasses.asdict(get_model_class(model).Hparams())
    defaults.update({f"{MODEL_PREFIX}{name}": value for name, value in hparams.items()})
    point: dict[str, Any] = {}
    for name, dist in summary.distributions().items():
        value = defaults.get(name, 1.0 if name.startswith(LR_MULT_PREFIX) else None)
        try:
            inside = value is not None and dist._contains(dist.to_internal_repr(value))
        except (ValueError, TypeError):
            inside = False  # a default the space does not offer: left to the sampler
        if inside:
            point[name] = value
    # What the space asks for with these values fixed: a parameter of a branch the
    # defaults switch off is not part of the point.
    with _quiet_optuna():
        study = optuna.create_study()
        study.enqueue_trial(point)
        trial = study.ask()
        resolved.define(trial)
    return {name: trial.params[name] for name in point if name in trial.params}
