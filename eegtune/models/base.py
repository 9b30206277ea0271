"""Shared model contract: per-window normalisation, typed hyperparameters, the EEGModel base.

Every model takes raw µV windows of shape (B, n_chans, n_times) and returns (B, n_outputs).
Normalisation lives inside the model so an exported state_dict needs no preprocessing code.
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["EEGModel", "ModelHparams", "WindowNorm"]


class WindowNorm(nn.Module):
    """Per-window, per-channel z-scoring over time, optionally dropping the last (Cz) channel.

    Cz is the recording reference in HBN-EEG, so it is nearly flat: z-scoring it would only
    amplify rounding noise, hence ``drop_cz`` (default on in every model).
    """

    def __init__(self, drop_cz: bool = True, eps: float = 1e-6) -> None:
        super().__init__()
        self.drop_cz = drop_cz
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        if self.drop_cz:
            x = x[:, :-1]
        centred = x - x.mean(dim=-1, keepdim=True)
        # Population std, written out: ~7x faster on CPU than torch.std's Welford pass.
        std = centred.square().mean(dim=-1, keepdim=True).sqrt()
        return centred / (std + self.eps)


# Hyperparameters are JSON scalars so configs round-trip and search spaces stay simple.
_SCALAR_TYPES: dict[str, type] = {"int": int, "float": float, "bool": bool, "str": str}


def _coerce(name: str, type_name: str, value: Any) -> Any:
    """Coerce numpy/Optuna scalars to plain Python so get_config() stays JSON-serialisable."""
    target = _SCALAR_TYPES.get(type_name)
    if target is None:
        return value
    is_bool = isinstance(value, bool) or type(value).__name__ == "bool_"
    if target is bool and is_bool:
        return bool(value)
    if target is int and isinstance(value, numbers.Integral) and not is_bool:
        return int(value)
    if target is float and isinstance(value, numbers.Real) and not is_bool:
        return float(value)
    if target is str and isinstance(value, str):
        return value
    raise ValueError(f"hyperparameter {name!r} must be {type_name}, got {value!r}")


@dataclass(frozen=True)
class ModelHparams:
    """Hyperparameters shared by every model; subclasses add fields (all with defaults)."""

    drop_cz: bool = True

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            type_name = (
                field.type if isinstance(field.type, str) else getattr(field.type, "__name__", "")
            )
            value = _coerce(field.name, type_name, getattr(self, field.name))
            object.__setattr__(self, field.name, value)
        self.validate()

    def validate(self) -> None:
        """Range/choice checks; override and raise ValueError."""

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]


def check_choice(name: str, value: Any, choices: tuple[Any, ...]) -> None:
    if value not in choices:
        raise ValueError(f"hyperparameter {name!r} must be one of {list(choices)}, got {value!r}")


def check_positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"hyperparameter {name!r} must be {bound}, got {value!r}")


class EEGModel(nn.Module):
    """Base class: raw µV (B, n_chans, n_times) -> (B, n_outputs).

    Subclasses set ``Hparams`` (a ModelHparams dataclass) and implement ``forward_normalized``
    on the output of ``self.norm`` (or override ``forward`` entirely, as the baselines do).
    """

    name: ClassVar[str] = ""  # filled in by registry.register_model
    Hparams: ClassVar[type[ModelHparams]] = ModelHparams
    trainable_by_gradient: ClassVar[bool] = True
    challenges: ClassVar[tuple[int, ...]] = (1, 2)
    # Networks regress a standardised target and map it back with saved buffers, so the
    # output layer starts at the training mean instead of spending epochs walking to it.
    scales_targets: ClassVar[bool] = True

    def __init__(
        self,
        n_chans: int = 129,
        n_times: int = 200,
        n_outputs: int = 1,
        sfreq: float = 100.0,
        **hparams: Any,
    ) -> None:
        super().__init__()
        unknown = sorted(set(hparams) - set(self.Hparams.names()))
        if unknown:
            model = self.name or type(self).__name__
            raise ValueError(
                f"unknown hyperparameter(s) {unknown} for model {model!r}; "
                f"valid hyperparameters: {sorted(self.Hparams.names())}"
            )
        min_chans = 2 if hparams.get("drop_cz", True) else 1
        if int(n_chans) < min_chans or int(n_times) < 1 or int(n_outputs) < 1 or sfreq <= 0:
            raise ValueError(
                f"invalid shape: n_chans={n_chans} (>= {min_chans}), n_times={n_times}, "
                f"n_outputs={n_outputs}, sfreq={sfreq}"
            )
        self.n_chans = int(n_chans)
        self.n_times = int(n_times)
        self.n_outputs = int(n_outputs)
        self.sfreq = float(sfreq)
        self.hp = self.Hparams(**hparams)
        self.norm = WindowNorm(drop_cz=self.hp.drop_cz)
        if self.scales_targets:
            self.register_buffer("target_mean", torch.zeros(self.n_outputs))
            self.register_buffer("target_std", torch.ones(self.n_outputs))

    def set_target_scale(self, mean: float, std: float) -> None:
        """Set the training targets' mean and std (kept in the state_dict); a no-op for
        models whose output is not a free regression (soft-argmax, closed-form fits)."""
        if not self.scales_targets:
            return
        if not std > 0:
            raise ValueError(f"target std must be > 0, got {std}")
        self.target_mean.fill_(float(mean))
        self.target_std.fill_(float(std))

    @property
    def n_net_chans(self) -> int:
        """Channels the network actually sees (Cz removed when drop_cz)."""
        return self.n_chans - int(self.hp.drop_cz)

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "n_chans": self.n_chans,
            "n_times": self.n_times,
            "n_outputs": self.n_outputs,
            "sfreq": self.sfreq,
            **dataclasses.asdict(self.hp),
        }

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """The trainable parameters by name of the part they belong to, each exactly once.

        ``train_func`` gives each name its own learning rate (``lr`` × ``lr_mult.<name>``),
        so a model with parts that learn at different speeds can be tuned per part. One
        group, ``"all"``, unless a model names its parts (see :meth:`groups_of_children`).
        """
        return {"all": [p for p in self.parameters() if p.requires_grad]}

    def groups_of_children(
        self, groups: dict[str, tuple[str, ...]]
    ) -> dict[str, list[nn.Parameter]]:
        """``param_groups`` from top-level attribute names: ``{"head": ("head",), ...}``.

        A trainable parameter under no listed attribute raises, so a layer added later
        cannot silently fall out of the optimiser.
        """
        owner = {child: name for name, children in groups.items() for child in children}
        out: dict[str, list[nn.Parameter]] = {name: [] for name in groups}
        for path, param in self.named_parameters():
            if not param.requires_grad:
                continue
            top = path.split(".", 1)[0]
            if top not in owner:
                raise ValueError(
                    f"{self.name}: parameter {path!r} is in none of the groups {list(groups)}"
                )
            out[owner[top]].append(param)
        return out

    def check_input(self, x: Tensor) -> None:
        if x.ndim != 3 or x.shape[1] != self.n_chans or x.shape[2] != self.n_times:
            raise ValueError(
                f"{self.name}: expected input (B, {self.n_chans}, {self.n_times}), "
                f"got {tuple(x.shape)}"
            )

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        out = self.forward_normalized(self.norm(x))
        return out * self.target_std + self.target_mean if self.scales_targets else out

    def forward_normalized(self, z: Tensor) -> Tensor:
        raise NotImplementedError

    def loss(self, X: Tensor, y: Tensor) -> Tensor:
        pred = self(X)
        return F.mse_loss(pred, as_target(y, pred))

    def extra_repr(self) -> str:
        return f"n_chans={self.n_chans}, n_times={self.n_times}, n_outputs={self.n_outputs}"


def as_target(y: Tensor, pred: Tensor) -> Tensor:
    """Accept y of shape (B,) or (B, n_outputs); match pred's dtype."""
    y = torch.as_tensor(y, device=pred.device, dtype=pred.dtype)
    if y.ndim == 1:
        y = y.unsqueeze(-1)
    if y.shape != pred.shape:
        raise ValueError(f"target shape {tuple(y.shape)} does not match {tuple(pred.shape)}")
    return y
