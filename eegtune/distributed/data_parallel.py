"""Data-parallel training within a fold: ``workers_per_fold`` replicas share each batch.

Every replica of a fold draws the same seeded batch and trains on its own slice of it;
before each optimiser step the slices' gradients are combined, weighted by slice size,
over the fold's own process group. The combined gradient is the gradient of the whole
batch's mean loss, so a fold trains with W replicas as it does with one, step for step
and learning rate for learning rate, up to float summation order, per-slice batch-norm
statistics and dropout draws, and one rule: a last batch of fewer than W windows is
dropped, since some replica would get none. Each replica reports its own slice's loss;
the trial's ``train_loss`` is its leader's.

At the end of every epoch the fold's leader broadcasts its weights and buffers, so the
replicas evaluate identical models and make identical early-stopping decisions: they
must, or their report counts would diverge and the collective calls would hang.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from eegtune.training.fold_data import FoldSource, WindowSet


def fold_groups(n_folds: int, workers_per_fold: int) -> list[Any]:
    """One process group per fold (ranks fold·W … fold·W+W-1). Every rank must call this."""
    import torch.distributed as dist

    return [
        dist.new_group(list(range(f * workers_per_fold, (f + 1) * workers_per_fold)))
        for f in range(n_folds)
    ]


def _flat(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.detach().reshape(-1) for t in tensors])


def _unflat(flat: torch.Tensor, tensors: list[torch.Tensor]) -> None:
    offset = 0
    for t in tensors:
        n = t.numel()
        t.copy_(flat[offset : offset + n].view_as(t))
        offset += n


class DataParallelFoldSource(FoldSource):
    """One replica's view of a fold: the whole fold in memory, a slice of every batch."""

    def __init__(
        self, base: FoldSource, group: Any, replica: int, n_replicas: int, leader_rank: int
    ):
        super().__init__(base.challenge, base.subjects, fit=base.fit, inner_val=base.inner_val)
        self._base = base
        self.data_mode = base.data_mode
        self._group = group
        self.replica = replica
        self.n_replicas = n_replicas
        self._leader_rank = leader_rank  # global rank, as torch.distributed.broadcast wants
        self._share = 1.0
        self._model: torch.nn.Module | None = None

    def load_test(self) -> WindowSet:
        return self._base.load_test()

    def attach(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self._model = model
        optimizer.register_step_pre_hook(lambda *_: self._combine_gradients())

    def train_batches(
        self, batch_size: int, rng: np.random.Generator
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        # The same rng on every replica: all draw the same batches and crops.
        for x, y in self._base.train_batches(batch_size, rng):
            if len(y) < self.n_replicas:
                continue  # a tail batch too small to give every replica a window
            rows = np.array_split(np.arange(len(y)), self.n_replicas)[self.replica]
            self._share = len(rows) / len(y)
            yield x[rows], y[rows]
        self._sync_from_leader()

    def _combine_gradients(self) -> None:
        import torch.distributed as dist

        params = [p for p in self._attached().parameters() if p.grad is not None]
        grads = [p.grad for p in params]
        flat = _flat(grads) * self._share  # slice mean × slice share = its part of the batch mean
        dist.all_reduce(flat, group=self._group)
        _unflat(flat, grads)

    def _sync_from_leader(self) -> None:
        import torch.distributed as dist

        model = self._attached()
        tensors = [p.data for p in model.parameters()]
        tensors += [b for b in model.buffers() if b.is_floating_point()]
        flat = _flat(tensors)
        dist.broadcast(flat, src=self._leader_rank, group=self._group)
        with torch.no_grad():
            _unflat(flat, tensors)

    def _attached(self) -> torch.nn.Module:
        if self._model is None:
            raise RuntimeError("DataParallelFoldSource.attach(model, optimizer) was not called")
        return self._model
