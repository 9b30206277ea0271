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
    # ...and equal to one worker on whole batches, up to float summation order.
    for k in alone:
        torch.testing.assert_close(replicas[0][k], alone[k], rtol=1e-4, atol=1e-5)
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


@pytest.mark.slow
@pytest.mark.ray
def test_two_folds_of_two_replicas_each_on_ray(prepared_store, tmp_path):
    import json

    ray = pytest.importorskip("ray")
    from eegtune.distributed.resources import plan_resources
    from eegtune.distributed.runtime import start_ray
    from eegtune.distributed.train import run_folds
    from eegtune.training.config import FoldJob, TrainConfig, make_config

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
        config = {k: v for k, v in make_config(job, hp).items() if k != "fold"}
        result = run_folds(config, plan, storage_path=str(tmp_path / "train"), name="ddp")
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
