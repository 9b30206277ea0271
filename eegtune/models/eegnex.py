"""``eegnex``: braindecode's EEGNeX (Chen et al. 2024) in plain torch.

Layer for layer the structure of ``braindecode.models.EEGNeX`` (module names and Sequential
indices included, so ``block_3.0.weight`` etc. line up with a braindecode state_dict that
predates its parametrised max-norm). At n_chans=129, n_times=200, n_outputs=1 it has 62,353
parameters with ``drop_cz=False``. ``drop_cz=True`` (the default, as in every eegtune model)
feeds 128 channels, which shrinks only the depthwise spatial conv: 62,353 - 64 = 62,289.

Differences from braindecode, all deliberate:
  * the per-window z-scoring (``WindowNorm``) in front, like every eegtune model;
  * max-norm is applied functionally in forward (weight renormalised on the fly, gradients flow
    through the renorm, as braindecode's ``MaxNormParametrize`` does) instead of overwriting
    ``weight.data`` in forward. The stored weights are never mutated, so eval under
    ``torch.inference_mode()`` is side-effect free and the state_dict keys stay plain.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from eegtune.models.base import EEGModel, ModelHparams, check_positive
from eegtune.models.registry import register_model

__all__ = ["EEGNeX", "EEGNeXHparams", "MaxNormConv2d", "MaxNormLinear"]


@dataclass(frozen=True)
class EEGNeXHparams(ModelHparams):
    depth_multiplier: int = 2
    filter_1: int = 8
    filter_2: int = 32
    drop_prob: float = 0.5
    kernel_block_1_2: int = 64
    kernel_block_4: int = 16
    dilation_block_4: int = 2
    avg_pool_block4: int = 4
    kernel_block_5: int = 16
    dilation_block_5: int = 4
    avg_pool_block5: int = 8
    max_norm_conv: float = 1.0
    max_norm_linear: float = 0.25

    def validate(self) -> None:
        for name in self.names():
            if name not in ("drop_cz", "drop_prob"):
                check_positive(name, getattr(self, name))
        if not 0.0 <= self.drop_prob < 1.0:
            raise ValueError(f"hyperparameter 'drop_prob' must be in [0, 1), got {self.drop_prob}")


class MaxNormConv2d(nn.Conv2d):
    """Conv2d whose each output filter is renormalised to L2 norm <= max_norm when used."""

    def __init__(self, *args: object, max_norm: float = 1.0, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.max_norm = max_norm
        nn.init.xavier_uniform_(self.weight, gain=1)  # as braindecode's Conv2dWithConstraint

    def forward(self, x: Tensor) -> Tensor:
        weight = torch.renorm(self.weight, p=2, dim=0, maxnorm=self.max_norm)
        return self._conv_forward(x, weight, self.bias)


class MaxNormLinear(nn.Linear):
    """Linear whose each output row is renormalised to L2 norm <= max_norm when used."""

    def __init__(self, *args: object, max_norm: float = 1.0, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.max_norm = max_norm

    def forward(self, x: Tensor) -> Tensor:
        weight = torch.renorm(self.weight, p=2, dim=0, maxnorm=self.max_norm)
        return F.linear(x, weight, self.bias)


class AddPlaneDim(nn.Module):
    """(B, C, T) -> (B, 1, C, T); stands where braindecode's einops Rearrange does."""

    def forward(self, x: Tensor) -> Tensor:
        return x.unsqueeze(1)


def _pooled_length(n: int, pool: int, pad: int = 1) -> int:
    return math.floor((n + 2 * pad - pool) / pool) + 1


@register_model("eegnex")
class EEGNeX(EEGModel):
    Hparams = EEGNeXHparams
    hp: EEGNeXHparams

    def __init__(
        self,
        n_chans: int = 129,
        n_times: int = 200,
        n_outputs: int = 1,
        sfreq: float = 100.0,
        **hparams: object,
    ) -> None:
        super().__init__(n_chans, n_times, n_outputs, sfreq, **hparams)
        hp = self.hp
        # AvgPool2d requires pad <= kernel / 2; braindecode's pad of 1 needs pools >= 2.
        if hp.avg_pool_block4 < 2 or hp.avg_pool_block5 < 2:
            raise ValueError("avg_pool_block4 and avg_pool_block5 must be >= 2")
        f1, f2, f3 = hp.filter_1, hp.filter_2, hp.filter_2 * hp.depth_multiplier
        k12 = (1, hp.kernel_block_1_2)
        self.block_1 = nn.Sequential(
            AddPlaneDim(),
            nn.Conv2d(1, f1, k12, padding="same", bias=False),
            nn.BatchNorm2d(f1),
        )
        self.block_2 = nn.Sequential(
            nn.Conv2d(f1, f2, k12, padding="same", bias=False),
            nn.BatchNorm2d(f2),
        )
        self.block_3 = nn.Sequential(
            MaxNormConv2d(
                f2, f3, (self.n_net_chans, 1), groups=f2, bias=False, max_norm=hp.max_norm_conv
            ),
            nn.BatchNorm2d(f3),
            nn.ELU(),
            nn.AvgPool2d((1, hp.avg_pool_block4), padding=(0, 1)),
            nn.Dropout(hp.drop_prob),
        )
        self.block_4 = nn.Sequential(
            nn.Conv2d(
                f3, f2, (1, hp.kernel_block_4), dilation=(1, hp.dilation_block_4),
                padding="same", bias=False,
            ),
            nn.BatchNorm2d(f2),
        )  # fmt: skip
        self.block_5 = nn.Sequential(
            nn.Conv2d(
                f2, f1, (1, hp.kernel_block_5), dilation=(1, hp.dilation_block_5),
                padding="same", bias=False,
            ),
            nn.BatchNorm2d(f1),
            nn.ELU(),
            nn.AvgPool2d((1, hp.avg_pool_block5), padding=(0, 1)),
            nn.Dropout(hp.drop_prob),
            nn.Flatten(),
        )  # fmt: skip
        t5 = _pooled_length(_pooled_length(self.n_times, hp.avg_pool_block4), hp.avg_pool_block5)
        if t5 < 1:
            raise ValueError(f"n_times={self.n_times} is too short for the EEGNeX pooling")
        self.in_features = f1 * t5
        self.final_layer = MaxNormLinear(
            self.in_features, self.n_outputs, max_norm=hp.max_norm_linear
        )

    def forward_normalized(self, z: Tensor) -> Tensor:
        z = self.block_3(self.block_2(self.block_1(z)))
        return self.final_layer(self.block_5(self.block_4(z)))
