"""Typed training configuration that round-trips through the flat dicts Ray expects.

Two dataclasses, kept apart on purpose:

- :class:`TrainConfig` holds the hyperparameters (data: what a search varies);
- :class:`FoldJob` says where and on what to run (store path, challenge, split, fold,
  output folder), which comes from CLI flags.

``to_flat`` gives one flat dict with model hyperparameters as ``model.<name>`` keys and
learning-rate multipliers as ``lr_mult.<group>`` keys, so that a Ray Tune search space can
address any of them; ``from_flat`` reverses it. A config is flattened once, where it is
handed to Ray (:func:`make_config`), and parsed back once where it lands
(:func:`parse_config`), which refuses any key neither class knows: a typo or a setting
renamed since would otherwise be dropped without a word.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
from dataclasses import dataclass, field
from typing import Any

from eegtune.errors import ConfigError

MODEL_PREFIX = "model."
LR_MULT_PREFIX = "lr_mult."
_PREFIXED = {"model_params": MODEL_PREFIX, "lr_mult": LR_MULT_PREFIX}
SPLITS = ("kfold", "release")
# Keys a flat config may carry besides FoldJob's and TrainConfig's: what the Ray layers
# add for their workers, never part of the recipe.
TRANSPORT_KEYS = frozenset({"workers_per_fold"})


@dataclass(frozen=True)
class TrainConfig:
    model: str = "softargmax_tcn"
    model_params: dict[str, Any] = field(default_factory=dict)
    lr: float = 3e-3
    # Per parameter group (``model.param_groups()``): that group learns at lr × multiplier.
    # A group not named here has 1.0; 0 freezes it.
    lr_mult: dict[str, float] = field(default_factory=dict)
    # Linear warm-up from lr / steps to lr over this many epochs, then the cosine decay;
    # 0 is the plain cosine schedule.
    warmup_epochs: float = 0.0
    weight_decay: float = 1e-2
    # AdamW's decay on norm layers' parameters and on biases too: the recipe before
    # parameter groups, kept so old runs can be reproduced.
    decay_norms_and_biases: bool = False
    batch_size: int = 64
    max_epochs: int = 30
    patience: int = 8
    inner_val_fraction: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.weight_decay < 0:
            raise ConfigError(
                f"lr must be > 0 and weight_decay >= 0, got {self.lr}, {self.weight_decay}"
            )
        if self.batch_size < 1 or self.max_epochs < 1 or self.patience < 1:
            raise ConfigError("batch_size, max_epochs and patience must be at least 1")
        if not 0.0 < self.inner_val_fraction < 1.0:
            raise ConfigError(
                f"inner_val_fraction must be in (0, 1), got {self.inner_val_fraction}"
            )
        for group, mult in self.lr_mult.items():
            if isinstance(mult, bool) or not isinstance(mult, numbers.Real) or not mult >= 0:
                raise ConfigError(f"lr_mult.{group} must be a number >= 0, got {mult!r}")
            if not math.isfinite(mult):
                raise ConfigError(f"lr_mult.{group} must be finite, got {mult!r}")
        if not self.warmup_epochs >= 0:
            raise ConfigError(f"warmup_epochs must be >= 0, got {self.warmup_epochs}")
        # Plain floats, so configs compare and serialise alike however they were built.
        object.__setattr__(self, "lr_mult", {k: float(v) for k, v in self.lr_mult.items()})

    def to_flat(self) -> dict[str, Any]:
        flat = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for name, prefix in _PREFIXED.items():
            flat.update({f"{prefix}{k}": v for k, v in flat.pop(name).items()})
        return flat

    @classmethod
    def from_flat(cls, flat: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)} - set(_PREFIXED)
        nested = {
            name: {k[len(prefix) :]: v for k, v in flat.items() if k.startswith(prefix)}
            for name, prefix in _PREFIXED.items()
        }
        return cls(**nested, **{k: v for k, v in flat.items() if k in names})

    def with_overrides(self, overrides: dict[str, Any]) -> TrainConfig:
        """Apply ``--set key=value`` style overrides (values already parsed)."""
        known = set(self.to_flat()) | ({f.name for f in dataclasses.fields(self)} - set(_PREFIXED))
        prefixes = tuple(_PREFIXED.values())
        bad = [k for k in overrides if k not in known and not k.startswith(prefixes)]
        if bad:
            raise ConfigError(
                f"unknown setting(s) {bad}; use model.<name> for model hyperparameters "
                f"and lr_mult.<group> for a parameter group's learning-rate multiplier"
            )
        return TrainConfig.from_flat({**self.to_flat(), **overrides})


@dataclass(frozen=True)
class FoldJob:
    store: str
    challenge: int
    out_dir: str
    fold: int = 0
    n_folds: int = 5
    split: str = "kfold"
    threads: int = 0  # 0 leaves torch's default
    replica: int = 0  # > 0: a data-parallel copy of the fold that leaves writing to replica 0
    # The seed of the subject split when it must differ from the training seed: a finalist
    # retrained with a new seed keeps its experiment's folds, so its OOF rows line up.
    split_seed: int | None = None
    # Where and how the fold computes (``--device``, ``--precision``): "auto" is the GPU
    # Ray assigned the worker, else the CPU; "bf16" autocasts the forward pass.
    device: str = "auto"
    precision: str = "32"
    # An experiment's saved split (``folds.json``): the fold's subjects come from it
    # instead of from reading every file of the store again.
    split_file: str | None = None
    # A fold-pool worker saves the fold's training state when the last save is older
    # than this (seconds), and when the fold ends.
    checkpoint_every: float = 30.0
    # > 0: not a fold but a refit: every subject of the split trains for exactly this many
    # epochs, with nothing held out or validated; the model lands in out_dir/refit/.
    refit_epochs: int = 0

    def __post_init__(self) -> None:
        from eegtune.training.devices import check_device_settings

        check_device_settings(self.device, self.precision)
        if self.challenge not in (1, 2):
            raise ConfigError(f"challenge must be 1 or 2, got {self.challenge}")
        if self.split not in SPLITS:
            raise ConfigError(f"split must be one of {SPLITS}, got {self.split!r}")
        if self.split == "kfold" and self.n_folds < 2:
            raise ConfigError("n_folds must be at least 2")

    def to_flat(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_flat(cls, flat: dict[str, Any]) -> FoldJob:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in flat.items() if k in names})


def make_config(job: FoldJob, hp: TrainConfig) -> dict[str, Any]:
    """The flat ``config`` that ``train_func`` takes."""
    return {**job.to_flat(), **hp.to_flat()}


def parse_config(flat: dict[str, Any]) -> tuple[FoldJob, TrainConfig]:
    """A flat config back as its two typed halves; a key neither knows is refused."""
    job_keys = {f.name for f in dataclasses.fields(FoldJob)}
    hp_keys = set(TrainConfig().to_flat()) | {
        f.name for f in dataclasses.fields(TrainConfig)
    } - set(_PREFIXED)
    prefixes = tuple(_PREFIXED.values())
    unknown = sorted(
        k
        for k in flat
        if k not in job_keys | hp_keys | TRANSPORT_KEYS and not k.startswith(prefixes)
    )
    if unknown:
        raise ConfigError(
            f"unknown setting(s) {unknown} in a training config; this eegtune knows "
            f"{sorted(job_keys | hp_keys)} and model.<name>, lr_mult.<group>"
        )
    return FoldJob.from_flat(flat), TrainConfig.from_flat(flat)


def parse_value(text: str) -> Any:
    """``--set`` values: JSON where it parses (numbers, booleans), else the plain string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_overrides(items: list[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        out[key.strip()] = parse_value(value.strip())
    return out
