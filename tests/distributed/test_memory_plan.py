"""The data plan: memory or stream mode by the object store's size, each fold worker's heap,
and how many workers (pool) or trials (Ray Train) the cluster's memory holds."""

from __future__ import annotations

import pytest

from eegtune.distributed.memory_plan import (
    SHARE_FRACTION,
    WORKER_BASE_HEAP,
    NodeMemory,
    plan_data,
)
from eegtune.distributed.resources import ResourceError, plan_resources
from eegtune.errors import ConfigError
from eegtune.training.data_modes import StoreSize
from eegtune.training.fold_stream import DEFAULT_STREAM

GIB = 2**30
# 10,000 Challenge 1 windows of 129 × 200 float32: 1.03 GB as stored.
SIZE = StoreSize(windows=10_000, window_shape=(129, 200), stored_itemsize=4)


def _node(cpus: float = 8, store: float = 2.0, heap: float = 5.0, name: str = "n") -> NodeMemory:
    return NodeMemory(name, cpus=cpus, object_store=int(store * GIB), heap=int(heap * GIB))


def test_auto_holds_the_windows_in_memory_when_the_smallest_object_store_has_room():
    plan = plan_resources(8, n_folds=2, pool=True)
    data, _ = plan_data("auto", SIZE, [_node(store=2.0)], plan)
    assert data.mode == "memory" and data.worker_heap == WORKER_BASE_HEAP
    assert data.shared_budget == int(SHARE_FRACTION * 2 * GIB)
    # One node too small for the windows sends the whole experiment to stream mode.
    data, _ = plan_data("auto", SIZE, [_node(store=2.0), _node(store=1.0, name="m")], plan)
    assert data.mode == "stream"
    assert data.worker_heap == WORKER_BASE_HEAP + DEFAULT_STREAM.heap_bytes(SIZE.window_bytes)


def test_memory_mode_that_cannot_fit_is_refused_with_the_numbers_and_the_fix():
    plan = plan_resources(8, n_folds=2, pool=True)
    with pytest.raises(ResourceError, match=r"10000 windows .*--data-mode stream"):
        plan_data("memory", SIZE, [_node(store=1.0)], plan)
    with pytest.raises(ConfigError, match="data mode"):
        plan_data("disk", SIZE, [_node()], plan)


def test_planner_caps_concurrent_trials_by_memory():
    plan = plan_resources(8, n_folds=2, cpus_per_worker=0.5)  # CPUs for 6 trials at once
    node = NodeMemory("n", cpus=8, object_store=2 * GIB, heap=5 * WORKER_BASE_HEAP)
    data, capped = plan_data("auto", SIZE, [node], plan)
    assert data.mode == "memory" and plan.max_concurrent_trials == 6
    assert capped.max_concurrent_trials == 2  # 5 workers' heap: two 2-fold trials
    with pytest.raises(ResourceError, match="holds only 1 such workers"):
        plan_data("memory", SIZE, [NodeMemory("n", 8, 2 * GIB, WORKER_BASE_HEAP)], plan)


def test_planner_counts_the_pools_workers_against_memory():
    plan = plan_resources(8, n_folds=3, pool=True)
    assert plan.pool_workers == 8
    node = NodeMemory("n", cpus=8, object_store=2 * GIB, heap=5 * WORKER_BASE_HEAP)
    _, capped = plan_data("auto", SIZE, [node], plan)
    assert capped.pool_workers == 5  # the heap of five workers, not the CPUs of eight
    two = [node, NodeMemory("m", cpus=8, object_store=2 * GIB, heap=2 * WORKER_BASE_HEAP)]
    assert plan_data("auto", SIZE, two, plan)[1].pool_workers == 7
    with pytest.raises(ResourceError, match="no node's memory outside the object store"):
        plan_data("auto", SIZE, [NodeMemory("n", 8, 2 * GIB, WORKER_BASE_HEAP // 2)], plan)
