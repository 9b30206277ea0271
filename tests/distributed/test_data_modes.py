"""Memory and stream mode on Ray: one shared copy of the windows, bounded memory when
they do not fit, and the planner's refusal before anything starts."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from eegtune.data.store import store_files
from eegtune.distributed.resources import ResourceError, plan_resources
from eegtune.distributed.runtime import start_ray
from eegtune.distributed.shared_windows import LOADERS, object_store_used, share_windows
from eegtune.distributed.tune import TuneJob, plan_experiment_data, run_tune
from eegtune.training.data_modes import store_size
from eegtune.training.fold_data import load_window_set
from eegtune.training.folds import store_subjects

pytestmark = [pytest.mark.slow, pytest.mark.ray]

# A cap the Challenge 2 windows of the test store (about 356 MB as float32) cannot fit in.
OBJECT_STORE_CAP = 100 * 2**20
TINY_ATTENTION = {
    "model.d_model": 16, "model.n_heads": 2, "model.n_layers": 1, "model.dropout": 0.1,
    "model.head_ratio": 0.1, "model.pattern": "blocked",
    "lr": 1e-3, "weight_decay": 1e-3, "batch_size": 32,
}  # fmt: skip


WINDOW_ID = ["subject", "recording", "window_index"]


def assert_each_window_once(frame: pd.DataFrame, store: Path, challenge: int) -> None:
    """Every window of the store's challenge is in ``frame`` exactly once: no window lost,
    none twice (a row count alone would pass both at once)."""
    ids = frame[WINDOW_ID]
    twice = ids[ids.duplicated(keep=False)]
    assert twice.empty, f"{len(twice)} rows repeat a window: {twice.head(3).values.tolist()}"
    stored = pd.concat(
        pq.read_table(f, columns=WINDOW_ID).to_pandas() for f in store_files(store, challenge)
    )
    got, want = (set(x.itertuples(index=False, name=None)) for x in (ids, stored))
    assert not want - got, f"{len(want - got)} windows missing: {sorted(want - got)[:3]}"
    assert not got - want, f"{len(got - want)} windows not in the store: {sorted(got - want)[:3]}"


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
    assert_each_window_once(oof, prepared_store, 2)  # every window predicted once


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
    for trial_dir in table["trial_dir"]:
        oof = pd.concat(pd.read_parquet(f) for f in Path(trial_dir).glob("fold*/oof*"))
        assert_each_window_once(oof, prepared_store, 1)
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


def fold_views_task():
    """A task that takes two folds' windows, as two pool workers' folds would, and says
    how they hold them; defined in a function so Ray ships it by value."""
    import ray

    def store_ranges() -> list[tuple[int, int]]:
        """The address ranges where this process maps Ray's object store (Linux)."""
        spans = []
        for line in Path("/proc/self/maps").read_text().splitlines():
            if "/dev/shm/plasma" in line:
                lo, hi = line.split()[0].split("-")
                spans.append((int(lo, 16), int(hi, 16)))
        return spans

    def subject_arrays(ws, subject: str) -> list[np.ndarray]:
        rows = np.flatnonzero(ws.meta["subject"].to_numpy() == subject)
        return [ws._parts[p] for p in np.unique(ws._part[rows])]

    def fold_views(shared, fold_a, fold_b, common: str) -> dict[str, bool]:
        a, b = shared.window_set(fold_a), shared.window_set(fold_b)
        arrays = [*a._parts, *b._parts]
        ranges = store_ranges()
        addresses = [x.__array_interface__["data"][0] for x in arrays]
        pairs = zip(subject_arrays(a, common), subject_arrays(b, common), strict=True)
        return {
            "read_only": all(not x.flags.writeable for x in arrays),
            "in_the_object_store": bool(ranges)
            and all(any(lo <= p < hi for lo, hi in ranges) for p in addresses),
            "one_copy_for_both_folds": all(np.shares_memory(x, y) for x, y in pairs),
        }

    return ray.remote(num_cpus=0.25)(fold_views)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("loader", LOADERS)
def test_folds_get_read_only_views_of_one_shared_copy(prepared_store, local_ray, loader):
    subjects = sorted(store_subjects(prepared_store, 1)["subject"])
    shared = share_windows(prepared_store, 1, loader=loader)
    every = shared.window_set(tuple(subjects))
    assert_each_window_once(every.meta, prepared_store, 1)
    # The windows, their order and their values are those of eegtune cv's in-process read.
    local = load_window_set(prepared_store, 1, tuple(subjects))
    pd.testing.assert_frame_equal(every.meta, local.meta)
    np.testing.assert_array_equal(every.eeg, local.eeg)
    # Two folds sharing a subject, in a worker: views of one copy in the object store.
    folds = tuple(subjects[:3]), tuple(subjects[2:])
    views = local_ray.get(fold_views_task().remote(shared, *folds, subjects[2]))
    assert views == dict.fromkeys(views, True)


@pytest.mark.parametrize("loader", LOADERS)
def test_a_damaged_file_is_named_when_shared(prepared_store, copy_tree, local_ray, loader):
    store = copy_tree(prepared_store, "store")
    victim = Path(store_files(store, 1)[1])
    victim.write_bytes(victim.read_bytes()[:-2000])
    with pytest.raises(RuntimeError, match=rf"{victim.name}: cannot read its windows"):
        share_windows(store, 1, loader=loader)
