"""Ray Train: the K folds of one configuration trained at the same time.

One ``TorchTrainer`` per trial (a launch costs 15–20 s on 2 cores, so never one per
fold), with ``workers_per_fold`` workers per fold: worker ``rank`` trains fold
``rank // workers_per_fold``. Each runs the unchanged ``train_func`` with two things
swapped in through context: a Ray Data fold source (sliced per replica when a fold is
data-parallel) and a :class:`FoldParallelReporter`, which pools the folds' epochs into one
report and checkpoints every fold's training state with it.

A lost worker restarts the trial's workers from that checkpoint (Ray Train's
``FailureConfig``); a re-run of the same trial (Ray Tune's) restores it from storage.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from eegtune.data.bids import atomic_write_text
from eegtune.distributed.data import RayDataFoldSource, fold_datasets
from eegtune.distributed.data_parallel import DataParallelFoldSource, fold_groups
from eegtune.distributed.fold_reporter import VAL_METRIC, FoldParallelReporter
from eegtune.distributed.resources import ResourcePlan
from eegtune.training.config import FoldJob, TrainConfig
from eegtune.training.fold_data import using_fold_source
from eegtune.training.reporting import reporting_to
from eegtune.training.train_func import fold_subjects, train_func

__all__ = ["VAL_METRIC", "fold_worker", "run_folds"]


def fold_worker(config: dict[str, Any]) -> None:
    """Ray Train's per-worker loop: this worker's fold, through the unchanged train_func."""
    import ray
    import ray.train
    import torch

    rank = ray.train.get_context().get_world_rank()
    per_fold = int(config["workers_per_fold"])
    fold, replica = divmod(rank, per_fold)
    torch.set_num_threads(int(config["threads"]))
    job = FoldJob.from_flat({**config, "fold": fold, "replica": replica})
    # Where each worker ran, for the record, the multi-node test and the fault drill.
    placement = {
        "fold": fold,
        "replica": replica,
        "rank": rank,
        "node_id": ray.get_runtime_context().get_node_id(),
        "pid": os.getpid(),
    }
    fold_dir = Path(job.out_dir) / f"fold{fold}"
    fold_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(fold_dir / f"placement_{replica}.json", json.dumps(placement))
    groups = fold_groups(int(config["n_folds"]), per_fold) if per_fold > 1 else None
    reporter = FoldParallelReporter(int(config["max_epochs"]), fold, per_fold, leader=replica == 0)

    def source(_store, challenge, subjects):
        whole = RayDataFoldSource(fold, challenge, subjects)
        if groups is None:
            return whole
        return DataParallelFoldSource(whole, groups[fold], replica, per_fold, fold * per_fold)

    with reporting_to(reporter), using_fold_source(source):
        train_func({**config, "fold": fold, "replica": replica})
    reporter.finish(Path(job.out_dir))


def run_folds(
    config: dict[str, Any],
    plan: ResourcePlan,
    storage_path: str,
    name: str,
    callbacks: list | None = None,
    max_failures: int = 1,
):
    """Train every fold of ``config`` in parallel under one TorchTrainer; return its Result.

    ``config`` is the flat train_func config without ``fold``; ``out_dir`` in it is where
    the folds' checkpoints and out-of-fold predictions land (shared storage on a cluster).
    ``max_failures``: how often a lost worker may restart the folds from their checkpoint.
    """
    import ray.train
    from ray.train.torch import TorchTrainer

    job, hp = FoldJob.from_flat(config), TrainConfig.from_flat(config)
    datasets: dict[str, Any] = {}
    for fold in range(plan.n_folds):
        subjects = fold_subjects(FoldJob.from_flat({**job.to_flat(), "fold": fold}), hp)
        datasets.update(fold_datasets(job.store, job.challenge, fold, subjects))
    Path(job.out_dir).mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(job.out_dir) / "config.json", json.dumps(config, indent=1, default=str))
    trainer = TorchTrainer(
        fold_worker,
        train_loop_config={
            **config,
            "workers_per_fold": plan.workers_per_fold,
            "threads": plan.torch_threads,
        },
        scaling_config=ray.train.ScalingConfig(
            num_workers=plan.workers_per_trial,
            use_gpu=False,
            resources_per_worker={"CPU": plan.cpus_per_worker},
        ),
        datasets=datasets,
        # Every worker sees its own fold's datasets whole; nothing is split across folds.
        dataset_config=ray.train.DataConfig(datasets_to_split=[]),
        run_config=ray.train.RunConfig(
            name=name,
            storage_path=storage_path,
            callbacks=callbacks or [],
            failure_config=ray.train.FailureConfig(
                max_failures=max_failures, controller_failure_limit=0
            ),
            # A restart needs only the newest checkpoint; keep one more for inspection.
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
        ),
    )
    return trainer.fit()
