"""Data-parallel folds: two replicas sharing each batch train exactly as one worker does."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.multiprocessing as mp

from eegtune.distributed.data_parallel import DataParallelFoldSource, fold_groups
from eegtune.training.fold_data import FoldSource, FoldSubjects, WindowSet

N_WINDOWS, BATCH, EPOCHS = 45, 8, 2  # 45 = 5 full batches + a tail of 5: uneven slices


class TinyRegressor(torch.nn.Module):
    """No batch norm and no dropout, so slicing the batch changes nothing but the sums."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(
            torch.nn.Flatten(),
            torch.nn.Linear(129 * 200, 4),
            torch.nn.Tanh(),
            torch.nn.Linear(4, 1),
        )

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.mse_loss(self.net(x)[:, 0], y)


class ArraySource(FoldSource):
    def __init__(self) -> None:
        rng = np.random.default_rng(1)
        eeg = rng.standard_normal((N_WINDOWS, 129, 200)).astype(np.float32)
        meta = pd.DataFrame(
            {
                "subject": [f"s{i % 5}" for i in range(N_WINDOWS)],
                "window_index": np.arange(N_WINDOWS),
                "target": rng.standard_normal(N_WINDOWS).astype(np.float32),
            }
        )
        ws = WindowSet(eeg, meta)
        super().__init__(1, FoldSubjects(fit=(), inner_val=(), test=()), fit=ws, inner_val=ws)


def _train(source: FoldSource) -> dict[str, torch.Tensor]:
    model = TinyRegressor()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    source.attach(model, opt)
    for epoch in range(EPOCHS):
        for x, y in source.train_batches(BATCH, np.random.default_rng([0, epoch])):
            opt.zero_grad()
            model.loss(torch.from_numpy(x), torch.from_numpy(y)).backward()
            opt.step()
    return {k: v.clone() for k, v in model.state_dict().items()}


def _replica(rank: int, init_file: str, out: dict) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        groups = fold_groups(n_folds=1, workers_per_fold=2)
        out[rank] = _train(DataParallelFoldSource(ArraySource(), groups[0], rank, 2, 0))
    finally:
        dist.destroy_process_group()


def test_two_replicas_match_one_worker_step_for_step(tmp_path):
    torch.set_num_threads(1)
    alone = _train(ArraySource())
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_replica, args=(str(tmp_path / "pg"), out), nprocs=2, join=True)
        replicas = dict(out)
    # The replicas end identical (they must, or their early stopping would diverge)...
    assert all(torch.equal(replicas[0][k], replicas[1][k]) for k in alone)
    # ...and equal to one worker on whole batches, up to float summation order. AdamW's
    # normalisation magnifies that order's effect on tiny gradients, and the order is the
    # BLAS kernel's choice for 4 rows against 8: the gap reached 40% of rtol 1e-4 on one
    # kernel set, hence 1e-3 (a wrong reduction would be off by far more).
    for k in alone:
        torch.testing.assert_close(replicas[0][k], alone[k], rtol=1e-3, atol=1e-5)
    assert not torch.equal(alone["net.1.weight"], TinyRegressor().state_dict()["net.1.weight"])


def test_each_replica_gets_its_own_slice_of_every_batch():
    whole = ArraySource()
    seen = []
    for replica in (0, 1):
        dp = DataParallelFoldSource(
            ArraySource(), group=None, replica=replica, n_replicas=2, leader_rank=0
        )
        dp._sync_from_leader = lambda: None  # no process group here: slicing only
        seen.append([y for _, y in dp.train_batches(BATCH, np.random.default_rng(7))])
    full = [y for _, y in whole.train_batches(BATCH, np.random.default_rng(7))]
    assert len(seen[0]) == len(seen[1]) == len(full)
    for a, b, y in zip(seen[0], seen[1], full, strict=True):
        np.testing.assert_array_equal(np.concatenate([a, b]), y)
        assert abs(len(a) - len(b)) <= 1


def test_source_must_be_attached_before_training():
    dp = DataParallelFoldSource(ArraySource(), group=None, replica=0, n_replicas=2, leader_rank=0)
    with pytest.raises(RuntimeError, match="attach"):
        dp._combine_gradients()


def _tail_source(n_windows: int) -> FoldSource:
    """Windows whose target is their own index, so every batch says which windows it holds."""
    meta = pd.DataFrame(
        {
            "subject": ["s0"] * n_windows,
            "window_index": np.arange(n_windows),
            "target": np.arange(n_windows, dtype=np.float32),
        }
    )
    ws = WindowSet(np.zeros((n_windows, 2, 3), dtype=np.float32), meta)
    return FoldSource(1, FoldSubjects(fit=(), inner_val=(), test=()), fit=ws, inner_val=ws)


def _expected_slices(n: int, batch: int, w: int, seed: int) -> list[list[list[int]]]:
    """Per replica, the window ids of each batch it should train on, from the rng alone:
    batches of ``batch`` in permutation order, each sorted and cut into w contiguous
    slices with the first ``len % w`` one longer; a batch of fewer than w windows is
    dropped, since some replica would get nothing."""
    order = np.random.default_rng(seed).permutation(n)
    out: list[list[list[int]]] = [[] for _ in range(w)]
    for start in range(0, n, batch):
        ids = sorted(int(i) for i in order[start : start + batch])
        if len(ids) < w:
            continue
        pos = 0
        for r in range(w):
            size = len(ids) // w + (1 if r < len(ids) % w else 0)
            out[r].append(ids[pos : pos + size])
            pos += size
    return out


@pytest.mark.parametrize(
    ("n_windows", "w", "tail"),
    [
        (41, 2, 1),  # 5 batches of 8 + a tail of 1 < W: dropped on both replicas
        (42, 2, 2),  # a tail of exactly W: one window each, kept
        (45, 2, 5),  # an uneven tail of 5 >= W: kept, split 3 + 2
        (42, 3, 2),  # a tail of 2 < W = 3: dropped on all three replicas
        (43, 3, 3),  # a tail of exactly W = 3: kept
    ],
)
def test_a_last_batch_smaller_than_w_is_dropped_on_every_replica(
    n_windows: int, w: int, tail: int
) -> None:
    assert n_windows % BATCH == tail
    seed = 5
    expected = _expected_slices(n_windows, BATCH, w, seed)
    n_full = n_windows // BATCH
    seen: list[list[list[int]]] = []
    shares: list[list[float]] = []
    for replica in range(w):
        dp = DataParallelFoldSource(
            _tail_source(n_windows), group=None, replica=replica, n_replicas=w, leader_rank=0
        )
        synced: list[bool] = []
        dp._sync_from_leader = lambda synced=synced: synced.append(True)  # no process group
        batches, share = [], []
        for x, y in dp.train_batches(BATCH, np.random.default_rng(seed)):
            assert len(x) == len(y) >= 1
            batches.append(y.astype(int).tolist())
            share.append(dp._share)  # the weight its gradient gets when slices are summed
        assert synced == [True]  # the end-of-epoch sync still runs after a dropped tail
        seen.append(batches)
        shares.append(share)
    assert seen == expected
    for k in range(len(expected[0])):
        whole = sum(len(expected[r][k]) for r in range(w))
        assert [shares[r][k] for r in range(w)] == pytest.approx(
            [len(expected[r][k]) / whole for r in range(w)]
        )
    kept_tail = tail >= w
    # Every replica steps the same number of times: the tail is kept or dropped everywhere.
    assert [len(b) for b in seen] == [n_full + kept_tail] * w
    covered = sorted(i for batches in seen for b in batches for i in b)
    last = np.random.default_rng(seed).permutation(n_windows)[n_full * BATCH :]
    if kept_tail:
        assert covered == list(range(n_windows))
    else:
        assert sorted(set(range(n_windows)) - set(covered)) == sorted(last.tolist())
        assert len(covered) == n_windows - tail


def _gather_and_check(rank: int, init_file: str, out: dict) -> None:
    import torch.distributed as dist

    from eegtune.distributed.fold_reporter import _check_replicas_agree

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    base = {"epoch": 3, "inner_val_rmse": 0.25, "stopped": False}
    # Per case, what each rank reports: the two ranks are the replicas of one fold.
    cases = {
        # Wall time and a slice's training loss differ between replicas by design.
        "agree": {**base, "epoch_seconds": 1.0 + rank, "train_loss": 0.5 + rank},
        "rmse": {**base, "inner_val_rmse": 0.25 if rank == 0 else float(np.nextafter(0.25, 1))},
        "epoch": {**base, "epoch": 3 + rank},
        "stopped": {**base, "stopped": rank == 1},
    }
    results: dict[str, str | None] = {}
    try:
        for case, metrics in cases.items():
            gathered: list[object] = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, metrics)
            try:
                _check_replicas_agree(gathered, workers_per_fold=2)
                results[case] = None
            except RuntimeError as exc:
                results[case] = str(exc)
        out[rank] = results
    finally:
        dist.destroy_process_group()


# Two spawned interpreters each import torch, pandas and pyarrow: tens of seconds on a
# loaded 2-core machine.
@pytest.mark.timeout(300)
def test_replicas_that_disagree_fail_together_through_a_real_gather(tmp_path):
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_gather_and_check, args=(str(tmp_path / "pg"), out), nprocs=2, join=True)
        results = dict(out)
    assert sorted(results) == [0, 1]
    for rank in (0, 1):
        assert results[rank]["agree"] is None
        for case in ("rmse", "epoch", "stopped"):
            message = results[rank][case]
            assert message is not None, f"rank {rank} accepted disagreeing replicas ({case})"
            assert "fold 0" in message and "disagree" in message
    # Both ranks saw the same gathered list, so they raise the same error together.
    assert results[0] == results[1]


def test_disagreement_names_the_fold_it_happened_in():
    from eegtune.distributed.fold_reporter import _check_replicas_agree

    ok = {"epoch": 1, "inner_val_rmse": 0.5, "stopped": False}
    # Two folds of two replicas (ranks 0-1 fold 0, ranks 2-3 fold 1); only fold 1 differs.
    gathered = [ok, dict(ok), ok, {**ok, "inner_val_rmse": 0.75}]
    with pytest.raises(RuntimeError, match=r"fold 1 disagree"):
        _check_replicas_agree(gathered, workers_per_fold=2)
    # The same list read as four single-replica folds has nothing to compare.
    _check_replicas_agree(gathered, workers_per_fold=1)
    _check_replicas_agree([ok, dict(ok), ok, dict(ok)], workers_per_fold=2)


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.timeout(300)
def test_two_folds_of_two_replicas_each_on_ray(prepared_store, tmp_path):
    import json

    import ray

    from eegtune.distributed.resources import plan_resources
    from eegtune.distributed.runtime import start_ray
    from eegtune.distributed.train import run_folds
    from eegtune.training.config import FoldJob, TrainConfig

    start_ray(num_cpus=2)
    try:
        plan = plan_resources(2, n_folds=2, workers_per_fold=2)
        assert plan.workers_per_trial == 4
        job = FoldJob(
            store=str(prepared_store), challenge=1, out_dir=str(tmp_path / "folds"), n_folds=2
        )
        hp = TrainConfig(
            model="softargmax_tcn", model_params={"n_filters": 8, "n_blocks": 2}, max_epochs=2
        )
        result = run_folds(job, hp, plan, storage_path=str(tmp_path / "train"), name="ddp")
        assert result.error is None
        assert np.isfinite(result.metrics["oof_nrmse"]) and np.isfinite(result.metrics["val_nrmse"])
        for k in (0, 1):
            fold = tmp_path / "folds" / f"fold{k}"
            workers = [json.loads((fold / f"placement_{r}.json").read_text()) for r in (0, 1)]
            assert [w["rank"] for w in workers] == [2 * k, 2 * k + 1]
            assert workers[0]["pid"] != workers[1]["pid"]
            # One set of outputs per fold, written by its first replica.
            oof = pd.read_parquet(fold / "oof.parquet")
            assert (
                len(oof) == oof[["subject", "recording", "window_index"]].drop_duplicates().shape[0]
            )
            assert json.loads((fold / "metrics.json").read_text())["best_epoch"] >= 0
    finally:
        ray.shutdown()
