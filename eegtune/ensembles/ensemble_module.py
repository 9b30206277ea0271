"""The ensemble's modules: a trial's fold models averaged, the members weighted and shrunk,
and the zip's unit boundary.

Imports only torch and the standard library: the submission zip carries this file as it
is (see :mod:`eegtune.ensembles.submission`), so it must never import eegtune.

Small batches (the scorer's are of one window) can take a faster route through the same
models, switched on by :meth:`EnsemblePredictor.fast_small_batches` (the zip does). Fold
models of one architecture and one configuration, at least ``MIN_STACK`` of them, run as
one ``torch.func.vmap`` call over their stacked weights, so PyTorch issues each layer once
for the group (convolutions become one grouped convolution) instead of once per model.
Any other model runs as a copy whose dilated ``Conv1d`` layers, at batch 1, do im2col and
one matrix product instead of PyTorch's slow dilated batch-1 kernel (same arithmetic).
The fold means, the weighted sum and the shrinkage are computed as on the plain route.
Every group and copy is checked against the plain modules on the first small batch; one
that fails or raises is left out of the fast route, and its models run as they are.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# The store keeps µV, so every model was trained on µV; the scorer feeds MNE's volts.
MICROVOLTS_PER_VOLT = 1e6
# Batches of at most this many windows take the fast route once it is switched on. The
# stacked activations grow with group size × batch: 75 stacked default softargmax_tcn
# fold models gained 1.26× at batch 8 and lost at batch 16 (0.75×) on 2 CPU cores.
SMALL_BATCH = 8
# A group of this many fold models sharing a configuration runs as one vmapped call;
# smaller groups run model by model (vmap costs about one model per call in its own overhead).
MIN_STACK = 4
# How far the fast route's outputs may be from the plain modules' on the check.
CHECK_RTOL, CHECK_ATOL = 1e-5, 1e-6


class TrialBag(nn.Module):
    """One member: the mean of a trial's K fold models (a seed bag: K per seed)."""

    def __init__(self, folds: list[nn.Module]) -> None:
        super().__init__()
        self.folds = nn.ModuleList(folds)

    def forward(self, x: Tensor) -> Tensor:
        if len(self.folds) == 1:  # the mean of one output is that output, bit for bit
            return self.folds[0](x)
        return torch.stack([m(x) for m in self.folds]).mean(dim=0)


class EnsemblePredictor(nn.Module):
    """Raw µV (B, 129, 200) float32 in, (B, 1) out:
    ``centre + alpha · (Σ_m weight_m · member_m(x) − centre)``; no members predicts
    ``centre`` (the mean predictor)."""

    def __init__(self, members: list[TrialBag], weights: list[float], alpha: float, centre: float):
        super().__init__()
        if len(members) != len(weights):
            raise ValueError(f"{len(members)} members but {len(weights)} weights")
        self.members = nn.ModuleList(members)
        self.register_buffer("weights", torch.tensor(weights, dtype=torch.float32))
        self.register_buffer("alpha", torch.tensor(float(alpha), dtype=torch.float32))
        self.register_buffer("centre", torch.tensor(float(centre), dtype=torch.float32))
        self.max_fast_batch = 0  # 0: every batch takes the plain route
        self._plan: _FastPlan | None = None

    def fast_small_batches(self, max_batch: int = SMALL_BATCH) -> EnsemblePredictor:
        """Let batches of at most ``max_batch`` windows take the fast route (see the
        module's docstring) in eval mode without autograd (under ``no_grad`` or
        ``inference_mode``, as :class:`FromVolts` runs); 0 switches it off. The route
        works on copies of the weights taken at its first small batch: ``train()``,
        ``eval()``, ``.to()`` and ``load_state_dict`` drop them, but changing a fold
        model's weights in place behind this module's back does not."""
        self.max_fast_batch = int(max_batch)
        self._plan = None
        return self

    def forward(self, x: Tensor) -> Tensor:
        if len(self.members) == 0:
            return self.centre.expand(x.shape[0], 1).clone()
        if (
            0 < x.shape[0] <= self.max_fast_batch
            and not self.training
            and not torch.is_grad_enabled()  # its weights are copies: no gradient reaches them
        ):
            if self._plan is None:
                self._plan = _FastPlan(self.members, x)
            member_outs = self._plan(x)
        else:
            member_outs = [m(x) for m in self.members]
        outs = torch.stack(member_outs, dim=-1)  # (B, 1, M)
        ens = (outs * self.weights).sum(dim=-1)
        return self.centre + self.alpha * (ens - self.centre)

    # The fast route's copies must not outlive a change to the modules they copy.
    def train(self, mode: bool = True) -> EnsemblePredictor:
        self._plan = None
        return super().train(mode)

    def _apply(self, *args, **kwargs):
        self._plan = None
        return super()._apply(*args, **kwargs)

    def _load_from_state_dict(self, *args, **kwargs):  # also when loaded through a parent
        self._plan = None
        return super()._load_from_state_dict(*args, **kwargs)


class FromVolts(nn.Module):
    """The zip's model: the scorer's input, float32 **volts** (B, 129, 200) exactly as MNE
    returns a recording, converted once to the µV the ensemble was trained on; (B, 1) out.

    The factor is fixed, never inferred from the data's magnitude: a zip that guessed could
    treat a quiet recording in µV as volts, and a loud one the other way round.

    Runs without autograd whatever the caller's mode: the scorer calls it under
    ``inference_mode``, and a caller that forgot would otherwise record a graph through
    every fold model for nothing. The output is an ordinary tensor, not an inference one.
    """

    def __init__(self, ensemble: EnsemblePredictor) -> None:
        super().__init__()
        self.ensemble = ensemble

    def forward(self, volts: Tensor) -> Tensor:
        with torch.no_grad():
            return self.ensemble(volts * MICROVOLTS_PER_VOLT)


# --- The fast route for small batches ----------------------------------------------------


class _FastPlan:
    """All the members' fold models as runners (vmapped groups, copies, or the models as
    they are), each checked on ``x`` against the plain modules; called, the members'
    outputs (each the mean of its folds, as :class:`TrialBag` computes it)."""

    def __init__(self, members: nn.ModuleList, x: Tensor) -> None:
        models = [fold for bag in members for fold in bag.folds]
        self.bags: list[list[int]] = []
        for bag in members:
            start = sum(len(b) for b in self.bags)
            self.bags.append(list(range(start, start + len(bag.folds))))
        groups: dict[object, list[int]] = {}
        for i, model in enumerate(models):
            groups.setdefault(_signature(model, i), []).append(i)
        self.runners: list[tuple[list[int], _Stacked | _Single]] = []
        self.n_models = len(models)
        with torch.no_grad():
            for indices in groups.values():
                group = [models[i] for i in indices]
                stacked = _Stacked.checked(group, x) if len(group) >= MIN_STACK else None
                if stacked is not None:
                    self.runners.append((indices, stacked))
                    continue
                for i in indices:
                    self.runners.append(([i], _Single(models[i], x)))

    def __call__(self, x: Tensor) -> list[Tensor]:
        outs: list[Tensor] = [x] * self.n_models  # placeholders, all overwritten
        for indices, run in self.runners:
            for i, out in zip(indices, run(x), strict=True):
                outs[i] = out
        return [
            outs[idx[0]] if len(idx) == 1 else torch.stack([outs[i] for i in idx]).mean(dim=0)
            for idx in self.bags
        ]


def _signature(model: nn.Module, index: int) -> object:
    """Models with equal signatures compute the same function of their tensors: the same
    class, the same configuration (``get_config()``), the same tensors' names, shapes,
    dtypes and devices. A model without a configuration gets a signature of its own."""
    get_config = getattr(model, "get_config", None)
    if not callable(get_config) or any(m.training for m in model.modules()):
        return ("alone", index)
    try:
        config = repr(sorted(get_config().items()))
    except Exception:
        return ("alone", index)
    tensors = tuple((name, tuple(t.shape), t.dtype, t.device) for name, t in _named_tensors(model))
    return (type(model), config, tensors)


def _named_tensors(model: nn.Module) -> list[tuple[str, Tensor]]:
    return [*model.named_parameters(), *model.named_buffers()]


def _close(got: list[Tensor], want: list[Tensor]) -> bool:
    return len(got) == len(want) and all(
        g.shape == w.shape
        and g.dtype == w.dtype
        and torch.allclose(g, w, rtol=CHECK_RTOL, atol=CHECK_ATOL, equal_nan=True)
        for g, w in zip(got, want, strict=True)
    )


class _Stacked:
    """G models of one signature as one ``vmap`` call: a copy of the first model whose
    parameters and buffers are swapped, for the call, for the G models' stacked ones."""

    def __init__(self, models: list[nn.Module]) -> None:
        self.base = copy.deepcopy(models[0])
        named = [dict(_named_tensors(m)) for m in models]
        self.slots: list[tuple[dict, str]] = []
        self.stacked: list[Tensor] = []
        for name in named[0]:
            owner_name, _, attr = name.rpartition(".")
            owner = self.base.get_submodule(owner_name)
            store = owner._parameters if attr in owner._parameters else owner._buffers
            self.slots.append((store, attr))
            self.stacked.append(torch.stack([n[name].detach() for n in named]))
        self.own = [store[attr] for store, attr in self.slots]
        self.vmapped = torch.func.vmap(self._call, in_dims=(0, None))

    @classmethod
    def checked(cls, models: list[nn.Module], x: Tensor) -> _Stacked | None:
        """The group stacked, or None where it cannot be (a tensor shared between layers,
        an operation vmap refuses) or where it computes other numbers than the models."""
        for m in models:
            shared = len(list(m.named_parameters(remove_duplicate=False))) + len(
                list(m.named_buffers(remove_duplicate=False))
            )
            if shared != len(_named_tensors(m)):
                return None
        try:
            stacked = cls(models)
            got = stacked(x)
        except Exception:
            return None
        return stacked if _close(got, [m(x) for m in models]) else None

    def _call(self, tensors: list[Tensor], x: Tensor) -> Tensor:
        for (store, attr), t in zip(self.slots, tensors, strict=True):
            store[attr] = t
        return self.base(x)

    def __call__(self, x: Tensor) -> list[Tensor]:
        try:
            return list(self.vmapped(self.stacked, x).unbind(0))
        finally:
            for (store, attr), t in zip(self.slots, self.own, strict=True):
                store[attr] = t


class _Single:
    """A model alone: run as a copy with :class:`_BatchOneConv1d` layers where it has
    dilated ``Conv1d`` ones and the copy agrees with it on the check (the first window of
    ``x``), else as it is."""

    def __init__(self, model: nn.Module, x: Tensor) -> None:
        self.model = model
        fast = copy.deepcopy(model)
        swapped = 0
        for layer in fast.modules():
            if _BatchOneConv1d.fits(layer):
                layer.__class__ = _BatchOneConv1d
                swapped += 1
        if swapped:
            one = x[:1]  # the layers differ from Conv1d at batch 1 only
            try:
                if _close([fast(one)], [model(one)]):
                    self.model = fast
            except Exception:
                pass

    def __call__(self, x: Tensor) -> list[Tensor]:
        return [self.model(x)]


class _BatchOneConv1d(nn.Conv1d):
    """A dilated ``Conv1d`` whose batch-1 calls on the CPU skip PyTorch's batch-1 dilated
    kernel (``slow_conv_dilated2d``, which gathers its im2col columns element by element,
    3–4× slower than the arithmetic) for a strided view, one copy and one ``addmm``: the
    same im2col-and-GEMM arithmetic. Other calls are ``Conv1d``'s own."""

    @staticmethod
    def fits(layer: nn.Module) -> bool:
        return (
            type(layer) is nn.Conv1d
            and layer.groups == 1
            and tuple(layer.stride) == (1,)
            and layer.padding_mode == "zeros"
            and layer.dilation[0] > 1
        )

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 3 or x.shape[0] != 1 or x.device.type != "cpu":
            return super().forward(x)
        (k,), (d,) = self.kernel_size, self.dilation
        if self.padding == "same":
            total = d * (k - 1)
            left, right = total // 2, total - total // 2
        elif self.padding == "valid":
            left = right = 0
        else:
            left = right = self.padding[0]
        xp = F.pad(x[0], (left, right)).contiguous()
        c_in, length = xp.shape
        n_out = length - d * (k - 1)
        if n_out < 1:
            return super().forward(x)
        cols = xp.as_strided((c_in, k, n_out), (length, d, 1)).reshape(c_in * k, n_out)
        w = self.weight.reshape(self.out_channels, c_in * k)
        y = w @ cols if self.bias is None else torch.addmm(self.bias.unsqueeze(1), w, cols)
        return y.unsqueeze(0)
