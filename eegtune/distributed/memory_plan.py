"""Memory in the resource plan: where the windows live, and what every fold worker needs.

The planner counts memory as it counts CPUs (:mod:`eegtune.distributed.resources`):

- **memory mode** keeps every window once per node in Ray's object store, so the store's
  bytes (at its dtype) must fit in the smallest node's object store, with room left for
  checkpoints and Ray's own objects (:data:`SHARE_FRACTION`);
- **stream mode** keeps nothing shared; each fold worker holds a shuffle buffer and one
  row group per open file (:class:`~eegtune.training.fold_stream.StreamOptions`);
- either way a fold worker's heap is :data:`WORKER_BASE_HEAP` plus that, and it asks Ray
  for this much ``memory`` beside its CPUs. So Ray never places more workers on a node
  than its memory outside the object store holds, and fewer trials run at once where
  memory, not CPUs, is short.

A layout that would run out is refused before anything starts, with the numbers.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from eegtune.distributed.resources import ResourceError, ResourcePlan
from eegtune.errors import ConfigError
from eegtune.training.data_modes import DATA_MODES, StoreSize, gib
from eegtune.training.fold_stream import DEFAULT_STREAM, StreamOptions

# Python, torch and Ray in a fold worker, a small model, its optimiser and a few batches.
WORKER_BASE_HEAP = 2**30
# Of a node's object store, what the shared windows may take: checkpoints, Ray Train's
# and Tune's own objects and the batches in flight need the rest.
SHARE_FRACTION = 0.8


@dataclass(frozen=True)
class NodeMemory:
    node_id: str
    cpus: float
    object_store: int  # bytes of shared memory Ray gives objects on the node
    heap: int  # bytes Ray schedules tasks and actors against (its "memory" resource)


def cluster_memory() -> list[NodeMemory]:
    """The live nodes' CPUs and memory, as Ray accounts for them."""
    import ray

    return [
        NodeMemory(
            node_id=n["NodeID"],
            cpus=float(n["Resources"].get("CPU", 0.0)),
            object_store=int(n["Resources"].get("object_store_memory", 0)),
            heap=int(n["Resources"].get("memory", 0)),
        )
        for n in ray.nodes()
        if n["Alive"]
    ]


@dataclass(frozen=True)
class DataPlan:
    mode: str  # "memory" or "stream"
    requested: str  # what the user asked for (auto, memory or stream)
    data_bytes: int  # the windows as stored
    shared_budget: int  # what the smallest node's object store may give them
    worker_heap: int  # bytes each fold worker asks Ray for

    def describe(self) -> str:
        why = f"{gib(self.data_bytes)} of windows; {gib(self.shared_budget)} of object store"
        how = "auto: " if self.requested == "auto" else ""
        where = (
            "once per node in the shared object store"
            if self.mode == "memory"
            else "streamed from the store every epoch"
        )
        return (
            f"data: {self.mode} mode, {where} ({how}{why}); {gib(self.worker_heap)} per fold worker"
        )


def plan_data(
    requested: str,
    size: StoreSize,
    nodes: list[NodeMemory],
    plan: ResourcePlan,
    stream: StreamOptions = DEFAULT_STREAM,
) -> tuple[DataPlan, ResourcePlan]:
    """Choose the data mode, size each worker's heap, and cap concurrent trials by memory.

    Returns the data plan and the resource plan with ``max_concurrent_trials`` lowered
    where memory, not CPUs, limits it; raises :class:`ResourceError` with the numbers
    where one trial cannot fit at all.
    """
    if requested not in DATA_MODES:
        raise ConfigError(f"data mode must be one of {DATA_MODES}, got {requested!r}")
    if not nodes:
        raise ResourceError("the cluster reports no live nodes")
    budget = int(SHARE_FRACTION * min(n.object_store for n in nodes))
    fits = size.stored_bytes <= budget
    mode = ("memory" if fits else "stream") if requested == "auto" else requested
    if mode == "memory" and not fits:
        raise ResourceError(
            f"memory mode keeps the {size.windows} windows ({gib(size.stored_bytes)}) once on "
            f"every node, but the smallest node's object store gives them "
            f"{gib(budget)} ({SHARE_FRACTION:.0%} of {gib(min(n.object_store for n in nodes))}); "
            f"use --data-mode stream, or start Ray with a larger --object-store-memory"
        )
    heap = WORKER_BASE_HEAP + (stream.heap_bytes(size.window_bytes) if mode == "stream" else 0)
    # How many fold workers the cluster's memory holds, node by node, as Ray will place them.
    hosted = sum(
        min(math.floor(n.cpus / plan.cpus_per_worker + 1e-9), n.heap // heap) for n in nodes
    )
    data_plan = DataPlan(mode, requested, size.stored_bytes, budget, heap)
    if plan.pool_workers:
        # The pool's workers are all the workers there will be: as many as memory holds.
        if hosted < 1:
            raise ResourceError(
                f"a fold worker needs {gib(heap)} of heap ({mode} mode), but no node's memory "
                f"outside the object store holds one ({', '.join(gib(n.heap) for n in nodes)})"
            )
        return data_plan, dataclasses.replace(plan, pool_workers=min(plan.pool_workers, hosted))
    trials = hosted // plan.workers_per_trial
    if trials < 1:
        raise ResourceError(
            f"one trial needs {plan.workers_per_trial} fold workers × {gib(heap)} of heap "
            f"({mode} mode), but the nodes' memory outside the object store holds only "
            f"{hosted} such workers ({', '.join(gib(n.heap) for n in nodes)}); use fewer "
            f"folds or workers per fold, or nodes with more memory"
        )
    capped = dataclasses.replace(
        plan, max_concurrent_trials=min(plan.max_concurrent_trials, trials)
    )
    return data_plan, capped
