"""Name -> model class registry, so configs and hyperparameter searches refer to models by name."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from eegtune.models.base import EEGModel

__all__ = ["create_model", "get_model_class", "list_models", "model_from_config", "register_model"]

_REGISTRY: dict[str, type[EEGModel]] = {}

M = TypeVar("M", bound=type[EEGModel])

_SHAPE_KEYS = ("n_chans", "n_times", "n_outputs", "sfreq")


def register_model(name: str) -> Callable[[M], M]:
    """Class decorator: ``@register_model("eegnex")``. Names must be unique."""

    def decorator(cls: M) -> M:
        if not (isinstance(cls, type) and issubclass(cls, EEGModel)):
            raise TypeError(f"register_model({name!r}) expects an EEGModel subclass, got {cls!r}")
        existing = _REGISTRY.get(name)
        if existing is not None and existing is not cls:
            raise ValueError(f"model name {name!r} is already registered to {existing.__name__}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorator


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def get_model_class(name: str) -> type[EEGModel]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; valid choices: {list_models()}") from None


def create_model(
    name: str,
    n_chans: int = 129,
    n_times: int = 200,
    n_outputs: int = 1,
    sfreq: float = 100.0,
    **hparams: Any,
) -> EEGModel:
    """Build a registered model; unknown names or hyperparameters raise ValueError."""
    cls = get_model_class(name)
    return cls(n_chans=n_chans, n_times=n_times, n_outputs=n_outputs, sfreq=sfreq, **hparams)


def model_from_config(config: Mapping[str, Any]) -> EEGModel:
    """Inverse of ``EEGModel.get_config()`` (weights are not included: load a state_dict)."""
    if "name" not in config:
        raise ValueError(f"config has no 'name' key; valid model names: {list_models()}")
    rest = dict(config)
    name = rest.pop("name")
    shape = {k: rest.pop(k) for k in _SHAPE_KEYS if k in rest}
    return create_model(name, **shape, **rest)
