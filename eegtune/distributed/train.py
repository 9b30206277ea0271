"""Ray Train: the K folds of one configuration trained at the same time, one worker each.

One ``TorchTrainer`` per trial (a launch costs 15–20 s on 2 cores, so never one per
fold). Worker ``rank`` trains fold ``rank``: it runs the unchanged ``train_func`` with two
things swapped in through context: a Ray Data fold source, and a reporter that gathers
every fold's epoch metrics and reports them as one pooled inner-validation NRMSE (exact,
from per-fold error sums) for ASHA to act on. Folds that stop early keep reporting
their last metrics, because every worker must report the same number of times.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from eegtune.data.bids import atomic_write_text
from eegtune.distributed.data import RayDataFoldSource, fold_datasets
from eegtune.distributed.resources import ResourcePlan
from eegtune.metrics import pooled_nrmse
from eegtune.training.config import FoldJob, TrainConfig
from eegtune.training.fold_data import using_fold_source
from eegtune.training.reporting import reporting_to
from eegtune.training.train_func import fold_subjects, oof_frame, train_func

VAL_METRIC = "val_nrmse"  # what ASHA and the searcher act on: inner validation, never OOF
SUM_KEYS = ("n", "sse", "sum_y", "sum_y2")


def aggregate_epoch(per_fold: list[dict[str, Any]]) -> dict[str, Any]:
    """One report from all folds' epoch reports (the Tune-visible metrics)."""
    parts = [{k: m[f"inner_val_{k}"] for k in SUM_KEYS} for m in per_fold]
    return {
        "epoch": max(m["epoch"] for m in per_fold) + 1,  # epochs done, for ASHA's time_attr
        VAL_METRIC: pooled_nrmse(parts),
        "train_loss": float(np.mean([m["train_loss"] for m in per_fold])),
        "fold_val_rmse": [m["inner_val_rmse"] for m in per_fold],
        "folds_stopped": sum(bool(m.get("stopped")) for m in per_fold),
    }


class FoldParallelReporter:
    """Gathers the folds' reports over torch.distributed and forwards one to Ray Train."""

    def __init__(self, max_epochs: int) -> None:
        self.max_epochs = max_epochs
        self.epochs_reported = 0
        self.last: dict[str, Any] | None = None
        self.best: dict[str, Any] | None = None  # the epoch train_func will keep
        self.final: dict[str, Any] | None = None

    def _gather(self, item: Any) -> list[Any]:
        import torch.distributed as dist

        out: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(out, item)
        return out

    def _report_epoch(self, metrics: dict[str, Any]) -> None:
        import ray.train

        ray.train.report(aggregate_epoch(self._gather(metrics)))
        self.epochs_reported += 1

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None = None) -> None:
        if metrics.get("done"):
            self.final = metrics
            return
        if "inner_val_n" not in metrics:  # closed-form models report once, without sums
            return
        self.last = metrics
        if self.best is None or metrics["inner_val_rmse"] < self.best["inner_val_rmse"]:
            self.best = metrics
        self._report_epoch(metrics)

    def finish(self, oof_dir: Path) -> None:
        """Pad the epochs of an early-stopped fold, then report the pooled OOF result."""
        import ray.train

        while self.last is not None and self.epochs_reported < self.max_epochs:
            self._report_epoch({**self.last, "stopped": True})
        finals = self._gather(self.final)
        bests = self._gather(self.best)
        # The final figure the searcher ranks by: pooled inner-validation NRMSE of the
        # epochs each fold kept. It comes one step after the last epoch, so ASHA's max_t
        # (max_epochs + 1) lets every fold write its out-of-fold predictions first.
        val = (
            pooled_nrmse([{k: b[f"inner_val_{k}"] for k in SUM_KEYS} for b in bests])
            if all(b is not None for b in bests)
            else float("nan")
        )
        ray.train.report(
            {
                "epoch": self.max_epochs + 1,
                VAL_METRIC: val,
                "oof_nrmse": pooled_oof(oof_dir, len(finals)),
                "fold_oof_nrmse": [f["oof_nrmse"] for f in finals],
                "best_epochs": [f["best_epoch"] for f in finals],
                # Not "done": Tune reads that key as "stop this trial" and would kill it
                # mid-teardown, leaking its placement group.
                "final": True,
            }
        )


def pooled_oof(run_dir: Path, n_folds: int) -> float:
    """Pooled out-of-fold NRMSE over folds 0…n_folds-1 under ``run_dir``."""
    from eegtune.metrics import nrmse

    oof = oof_frame(run_dir, n_folds)
    return nrmse(oof["target"], oof["prediction"])


def fold_worker(config: dict[str, Any]) -> None:
    """Ray Train's per-worker loop: this worker's fold, through the unchanged train_func."""
    import ray
    import ray.train
    import torch

    rank = ray.train.get_context().get_world_rank()
    fold = rank // int(config["workers_per_fold"])
    torch.set_num_threads(int(config["threads"]))
    job = FoldJob.from_flat({**config, "fold": fold})
    reporter = FoldParallelReporter(int(config["max_epochs"]))

    def source(_store, challenge, subjects):
        return RayDataFoldSource(fold, challenge, subjects)

    with reporting_to(reporter), using_fold_source(source):
        train_func({**config, "fold": fold})
    # Where each fold ran, for the record (and for the multi-node test).
    placement = {"fold": fold, "rank": rank, "node_id": ray.get_runtime_context().get_node_id()}
    atomic_write_text(Path(job.out_dir) / f"fold{fold}" / "placement.json", json.dumps(placement))
    reporter.finish(Path(job.out_dir))


def run_folds(
    config: dict[str, Any],
    plan: ResourcePlan,
    storage_path: str,
    name: str,
    callbacks: list | None = None,
):
    """Train every fold of ``config`` in parallel under one TorchTrainer; return its Result.

    ``config`` is the flat train_func config without ``fold``; ``out_dir`` in it is where
    the folds' checkpoints and out-of-fold predictions land (shared storage on a cluster).
    """
    import ray.train
    from ray.train.torch import TorchTrainer

    job, hp = FoldJob.from_flat(config), TrainConfig.from_flat(config)
    if plan.workers_per_fold != 1:
        # Each worker would train the whole fold on its own; refuse rather than waste them.
        raise NotImplementedError(
            "data-parallel training within a fold (workers_per_fold > 1) is not implemented "
            "yet; run one worker per fold"
        )
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
            failure_config=ray.train.FailureConfig(max_failures=0, controller_failure_limit=0),
        ),
    )
    return trainer.fit()
