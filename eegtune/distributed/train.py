"""Ray Train: the K folds of one configuration trained at the same time.

One ``TorchTrainer`` per trial (a launch costs seconds, so never one per fold), with
``workers_per_fold`` workers per fold: worker ``rank`` trains fold
``rank // workers_per_fold``. Each runs the unchanged ``train_func`` with two things
swapped in through context: a fold source (in memory mode the experiment's shared
windows, :mod:`eegtune.distributed.shared_windows`; in stream mode the fold's files read
every epoch, :mod:`eegtune.training.fold_stream`; sliced per replica when a fold is
data-parallel) and a :class:`FoldParallelReporter`, which pools the folds' epochs into
one report and checkpoints every fold's training state with it.

A lost worker restarts the trial's workers from that checkpoint (Ray Train's
``FailureConfig``); a re-run of the same trial (Ray Tune's) restores it from storage.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from eegtune import storage
from eegtune.distributed.data_parallel import DataParallelFoldSource, fold_groups
from eegtune.distributed.fold_reporter import VAL_METRIC, FoldParallelReporter
from eegtune.distributed.memory_plan import WORKER_BASE_HEAP
from eegtune.distributed.resources import ResourcePlan
from eegtune.distributed.shared_windows import SharedWindows, experiment_fold_source, share_windows
from eegtune.distributed.trial_driver import write_trial_config
from eegtune.errors import ConfigError
from eegtune.training.config import FoldJob, TrainConfig, make_config, parse_config
from eegtune.training.fold_data import FoldSource, using_fold_source
from eegtune.training.reporting import reporting_to
from eegtune.training.run_files import fold_dir
from eegtune.training.train_func import train_func

SHARED_KEY = "_shared_windows"  # in the workers' loop config only, never in config.json

__all__ = ["VAL_METRIC", "fold_worker", "run_folds", "worker_device"]


def fold_worker(config: dict[str, Any]) -> None:
    """Ray Train's per-worker loop: this worker's fold, through the unchanged train_func."""
    import ray
    import ray.train
    import torch

    config = dict(config)
    shared: SharedWindows | None = config.pop(SHARED_KEY, None)
    rank = ray.train.get_context().get_world_rank()
    per_fold = int(config["workers_per_fold"])
    fold, replica = divmod(rank, per_fold)
    torch.set_num_threads(int(config["threads"]))
    config["device"] = worker_device(str(config.get("device", "auto")))
    job, hp = parse_config({**config, "fold": fold, "replica": replica})
    # Where each worker ran, for the record, the multi-node test and the fault drill, and
    # when it reached each step (wall-clock seconds), for the trial-launch benchmark.
    timeline = {"worker_started": time.time()}
    placement = {
        "fold": fold,
        "replica": replica,
        "rank": rank,
        "node_id": ray.get_runtime_context().get_node_id(),
        "pid": os.getpid(),
        "device": job.device,
        "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
        "timeline": timeline,
    }
    placement_file = storage.join(fold_dir(job.out_dir, fold), f"placement_{replica}.json")
    storage.write_text(placement_file, json.dumps(placement))
    groups = fold_groups(job.n_folds, per_fold) if per_fold > 1 else None
    reporter = FoldParallelReporter(hp.max_epochs, fold, per_fold, leader=replica == 0)

    def source(store, challenge, subjects) -> FoldSource:
        whole = experiment_fold_source(shared, store, challenge, subjects)
        timeline["data_ready"] = time.time()
        if groups is None:
            return whole
        return DataParallelFoldSource(whole, groups[fold], replica, per_fold, fold * per_fold)

    with reporting_to(reporter), using_fold_source(source):
        train_func({**config, "fold": fold, "replica": replica})
    timeline["first_report"] = reporter.first_report_at
    storage.write_text(placement_file, json.dumps(placement))
    reporter.finish(job.out_dir)


def worker_device(requested: str, under_train: bool = True) -> str:
    """The device this worker trains on: ``auto`` is the GPU Ray assigned it (under Ray
    Train its local rank's, since workers on one node share CUDA_VISIBLE_DEVICES), else
    the CPU."""
    import ray
    import torch

    if requested != "auto":
        return requested
    # Logical GPUs (a CPU build of torch, or a test cluster) train on the CPU.
    if not ray.get_gpu_ids() or not torch.cuda.is_available():
        return "cpu"
    if not under_train:  # a pool worker sees only the GPU Ray gave it
        return "cuda:0"
    import ray.train.torch

    return str(ray.train.torch.get_device())


def run_folds(
    job: FoldJob,
    hp: TrainConfig,
    plan: ResourcePlan,
    storage_path: str,
    name: str,
    callbacks: list | None = None,
    max_failures: int = 1,
    windows: SharedWindows | None = None,
    data_mode: str = "memory",
    worker_heap: int = WORKER_BASE_HEAP,
):
    """Train every fold of ``job`` in parallel under one TorchTrainer; return its Result.

    ``job.out_dir`` is where the folds' checkpoints and out-of-fold predictions land
    (shared storage on a cluster); ``job.fold`` is ignored: every fold runs.
    ``max_failures``: how often a lost worker may restart the folds from their checkpoint.
    ``data_mode``: "memory" reads ``windows`` (the experiment's shared copy; shared here
    for this call alone when not given), "stream" reads the fold's files every epoch.
    ``worker_heap``: the memory each worker asks Ray for (see ``memory_plan``).
    """
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    config = make_config(job, hp)  # flattened once, for Ray
    if data_mode not in ("memory", "stream"):
        raise ConfigError(f"data_mode must be memory or stream here, got {data_mode!r}")
    if data_mode == "memory" and windows is None:
        windows = share_windows(job.store, job.challenge)
    write_trial_config(config)
    trainer = TorchTrainer(
        fold_worker,
        train_loop_config={
            **config,
            "workers_per_fold": plan.workers_per_fold,
            "threads": plan.torch_threads,
            **({SHARED_KEY: windows} if data_mode == "memory" else {}),
        },
        # gloo on GPUs too: folds may share a GPU (0.25 GPU per fold), which NCCL refuses,
        # and a data-parallel fold's collectives move these small models' gradients only.
        torch_config=TorchConfig(backend="gloo"),
        scaling_config=ray.train.ScalingConfig(
            num_workers=plan.workers_per_trial,
            use_gpu=plan.gpus_per_fold > 0,
            resources_per_worker={
                "CPU": plan.cpus_per_worker,
                "memory": worker_heap,
                **({"GPU": plan.gpus_per_worker} if plan.gpus_per_fold else {}),
            },
        ),
        run_config=ray.train.RunConfig(
            name=name,
            storage_path=storage_path,
            callbacks=callbacks or [],
            # A worker group that fails to start (a worker lost while starting, say on a
            # loaded node) is retried as often as a worker lost while training.
            failure_config=ray.train.FailureConfig(
                max_failures=max_failures, controller_failure_limit=max_failures
            ),
            # A restart needs only the newest checkpoint; keep one more for inspection.
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
        ),
    )
    return trainer.fit()
