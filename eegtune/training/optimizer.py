"""Where a fold's learning rates are set: AdamW over the model's parameter groups, and the
schedule (optional linear warm-up, then cosine decay to zero).

Each group the model names (``model.param_groups()``) learns at ``lr × lr_mult.<group>``.
Within a group, norm layers' parameters and biases get no weight decay (unless
``decay_norms_and_biases``): decay pulls them towards zero, which for a norm's scale means
"switch this feature off" rather than "keep the weights small". So a group becomes up to
two AdamW groups, ``<group>`` and ``<group>.no_decay``.

With every multiplier at 1, ``decay_norms_and_biases`` and no warm-up, the optimiser and
schedule are exactly the single-group AdamW and ``CosineAnnealingLR`` that eegtune used
before groups existed: the same weights, bit for bit (tested).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from eegtune.errors import ConfigError
from eegtune.models.base import EEGModel
from eegtune.training.config import TrainConfig

__all__ = [
    "base_rate",
    "build_optimizer",
    "build_schedule",
    "lr_factor",
    "no_decay_parameters",
]

# Their parameters scale or shift normalised activations.
NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


def no_decay_parameters(model: nn.Module) -> set[int]:
    """The ids of norm layers' parameters and of every parameter named ``bias``."""
    out: set[int] = set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if isinstance(module, NORM_LAYERS) or name == "bias":
                out.add(id(param))
    return out


def build_optimizer(model: EEGModel, hp: TrainConfig) -> torch.optim.AdamW:
    """AdamW with one parameter group per (model group, decayed or not), in model order.

    A multiplier for a group the model does not have is refused, naming the groups it has:
    a misspelt ``lr_mult`` would otherwise train at the base rate unnoticed.
    """
    groups = model.param_groups()
    unknown = sorted(set(hp.lr_mult) - set(groups))
    if unknown:
        raise ConfigError(
            f"model {hp.model!r} has no parameter group(s) {unknown} for lr_mult; "
            f"its groups: {list(groups)}"
        )
    no_decay = set() if hp.decay_norms_and_biases else no_decay_parameters(model)
    param_groups = []
    for name, params in groups.items():
        lr = hp.lr * hp.lr_mult.get(name, 1.0)
        decayed = [p for p in params if id(p) not in no_decay]
        kept = [p for p in params if id(p) in no_decay]
        for suffix, members, decay in (("", decayed, hp.weight_decay), (".no_decay", kept, 0.0)):
            if members:
                param_groups.append(
                    {"params": members, "lr": lr, "weight_decay": decay, "name": name + suffix}
                )
    return torch.optim.AdamW(param_groups, lr=hp.lr, weight_decay=hp.weight_decay)


def warmup_steps(hp: TrainConfig, steps_per_epoch: int) -> int:
    """Warm-up steps: ``warmup_epochs`` of them, at most half the run, so that a short run
    (a smoke test's single epoch) still anneals instead of ending at its peak rate."""
    total = hp.max_epochs * steps_per_epoch
    return min(round(hp.warmup_epochs * steps_per_epoch), total // 2)


def lr_factor(step: int, total_steps: int, warmup: int) -> float:
    """The share of each group's rate in use after ``step`` optimiser steps."""
    if step < warmup:
        return (step + 1) / warmup
    decay_steps = max(1, total_steps - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(step - warmup, decay_steps) / decay_steps))


def base_rate(hp: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """The base rate after ``step`` optimiser steps; group g learns at this × lr_mult.g."""
    total = hp.max_epochs * steps_per_epoch
    return hp.lr * lr_factor(step, total, warmup_steps(hp, steps_per_epoch))


def build_schedule(
    opt: torch.optim.Optimizer, hp: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Cosine decay over the run; with warm-up, a linear ramp over its first steps."""
    total = hp.max_epochs * steps_per_epoch
    warmup = warmup_steps(hp, steps_per_epoch)
    if warmup == 0:  # the schedule of runs made before warm-up existed, to the bit
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(step, total, warmup))
