"""Memory and stream mode on Ray: one shared copy of the windows, bounded memory when
they do not fit, and the planner's refusal before anything starts."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from eegtune.distributed.memory_plan import plan_data
from eegtune.distributed.resources import ResourceError, plan_resources
from eegtune.distributed.runtime import start_ray
from eegtune.distributed.shared_windows import object_store_used
from eegtune.distributed.tune import TuneJob, plan_experiment_data, run_tune
from eegtune.training.data_modes import store_size
from eegtune.training.folds import store_subjects

pytestmark = [pytest.mark.slow, pytest.mark.ray]

# A cap the Challenge 2 windows of the test store (about 356 MB as float32) cannot fit in.
OBJECT_STORE_CAP = 100 * 2**20
TINY_ATTENTION = {
    "model.d_model": 16, "model.n_heads": 2, "model.n_layers": 1, "model.dropout": 0.1,
    "model.head_ratio": 0.1, "model.pattern": "blocked",
    "lr": 1e-3, "weight_decay": 1e-3, "batch_size": 32,
}  # fmt: skip


def _job(tmp_path: Path, store: Path, **settings) -> TuneJob:
    defaults = dict(store=str(store), n_trials=1, n_folds=5, name="x", max_epochs=1)
    return TuneJob(storage_path=str(tmp_path), **{**defaults, **settings})  # type: ignore[arg-type]


@pytest.fixture
def capped_ray():
    import ray

    start_ray(num_cpus=2, object_store_memory=OBJECT_STORE_CAP)
    yield ray
    ray.shutdown()


@pytest.mark.timeout(600)
def test_store_larger_than_the_cap_streams_and_memory_mode_is_refused(
    prepared_store, tmp_path, capped_ray
):
    plan = plan_resources(2, n_folds=5, pool=True)
    size = store_size(prepared_store, 2)
    assert size.stored_bytes > OBJECT_STORE_CAP  # the premise

    # Memory mode is refused by the planner, naming the numbers, before anything runs.
    memory = _job(tmp_path, prepared_store, challenge=2, space="sparse_attention",
                  name="mem", data_mode="memory")  # fmt: skip
    with pytest.raises(ResourceError, match=r"0\.33 GiB\).*0\.08 GiB.*--data-mode stream"):
        run_tune(memory, plan, verbose=0)
    assert not memory.experiment_dir.exists()

    # Auto picks stream mode, and the 5-fold search completes in it.
    job = _job(tmp_path, prepared_store, challenge=2, space="sparse_attention", name="auto")
    data, _ = plan_experiment_data(job, plan)
    assert data.mode == "stream" and data.requested == "auto"
    table = run_tune(job, plan, verbose=0, points_to_evaluate=[TINY_ATTENTION])
    assert table.loc[0, "status"] == "COMPLETE" and np.isfinite(table.loc[0, "oof_nrmse"])
    saved = json.loads((job.experiment_dir / "tune_job.json").read_text())
    assert saved["data"]["mode"] == "stream"
    oof = pd.concat(pd.read_parquet(f) for f in Path(table.loc[0, "trial_dir"]).glob("fold*/oof*"))
    assert sorted(oof["subject"].unique()) == sorted(store_subjects(prepared_store, 2)["subject"])
    assert oof.groupby("subject")["fold"].nunique().eq(1).all()
    assert len(oof) == size.windows  # every window predicted once


def test_planner_caps_concurrent_trials_by_memory(prepared_store):
    from eegtune.distributed.memory_plan import WORKER_BASE_HEAP, NodeMemory

    size = store_size(prepared_store, 1)
    plan = plan_resources(8, n_folds=2, cpus_per_worker=0.5)  # CPUs for 6 trials at once
    node = NodeMemory("n", cpus=8, object_store=2**30, heap=5 * WORKER_BASE_HEAP)
    data, capped = plan_data("auto", size, [node], plan)
    assert data.mode == "memory" and plan.max_concurrent_trials == 6
    assert capped.max_concurrent_trials == 2  # 5 workers' heap: two 2-fold trials
    with pytest.raises(ResourceError, match="holds only 1 such workers"):
        plan_data("memory", size, [NodeMemory("n", 8, 2**30, WORKER_BASE_HEAP)], plan)


def test_planner_counts_the_pools_workers_against_memory(prepared_store):
    from eegtune.distributed.memory_plan import WORKER_BASE_HEAP, NodeMemory

    size = store_size(prepared_store, 1)
    plan = plan_resources(8, n_folds=3, pool=True)
    assert plan.pool_workers == 8
    node = NodeMemory("n", cpus=8, object_store=2**30, heap=5 * WORKER_BASE_HEAP)
    _, capped = plan_data("auto", size, [node], plan)
    assert capped.pool_workers == 5  # the heap of five workers, not the CPUs of eight
    two = [node, NodeMemory("m", cpus=8, object_store=2**30, heap=2 * WORKER_BASE_HEAP)]
    assert plan_data("auto", size, two, plan)[1].pool_workers == 7
    with pytest.raises(ResourceError, match="no node's memory outside the object store"):
        plan_data("auto", size, [NodeMemory("n", 8, 2**30, WORKER_BASE_HEAP // 2)], plan)


class _PeakObjectStore(threading.Thread):
    """Samples the object store's bytes in use while a search runs."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak, self.samples, self.stop = 0, 0, threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.2):
            self.peak = max(self.peak, object_store_used())
            self.samples += 1


def _report_spans(job: TuneJob) -> list[tuple[float, float]]:
    """Each trial's first and last report times, from Tune's log of its results."""
    spans = []
    for log in (job.experiment_dir / "ray" / "tune_0").glob("*/result.json"):
        stamps = [json.loads(line)["timestamp"] for line in log.read_text().splitlines() if line]
        spans.append((min(stamps), max(stamps)))
    return spans


@pytest.mark.timeout(600)
def test_two_concurrent_trials_share_one_copy_of_the_windows(prepared_store, tmp_path, local_ray):
    size = store_size(prepared_store, 1)
    # Six pool workers of a quarter CPU: both trials' folds at once.
    plan = plan_resources(2, n_folds=2, cpus_per_worker=0.25, max_concurrent_trials=2, pool=True)
    job = _job(tmp_path, prepared_store, challenge=1, space="softargmax_tcn", n_trials=2,
               n_folds=2, name="share", max_epochs=30, data_mode="memory", scheduler="fifo",
               fixed={"patience": 100})  # fmt: skip
    # FIFO: both trials must finish (ASHA could stop one), and 30 epochs keep them
    # training long enough to overlap however fast each launches.
    small = {"model.n_filters": 16, "model.n_blocks": 2, "model.loss": "mse", "batch_size": 32}
    sampler = _PeakObjectStore()
    before = object_store_used()
    sampler.start()
    try:
        table = run_tune(job, plan, verbose=0, points_to_evaluate=[small, small])
    finally:
        sampler.stop.set()
        sampler.join()
    assert (table["status"] == "COMPLETE").all() and len(table) == 2
    # The two trials trained at the same time...
    (a0, a1), (b0, b1) = _report_spans(job)
    assert min(a1, b1) - max(a0, b0) > 0, "the trials did not overlap"
    # ...while the object store held the windows once: two copies (one per trial, as
    # before) or four (one per fold) would need at least twice the windows' bytes.
    assert sampler.samples > 10
    assert size.stored_bytes <= sampler.peak - before < 1.5 * size.stored_bytes, (
        sampler.peak,
        before,
        size.stored_bytes,
    )


def test_a_damaged_file_is_named_when_shared(prepared_store, copy_tree, local_ray):
    from eegtune.data.store import store_files
    from eegtune.distributed.shared_windows import share_windows

    store = copy_tree(prepared_store, "store")
    victim = Path(store_files(store, 1)[1])
    victim.write_bytes(victim.read_bytes()[:-2000])
    with pytest.raises(RuntimeError, match=rf"{victim.name}: cannot read its windows"):
        share_windows(store, 1)
