"""Two folds trained in parallel on Ray against the same two folds one after another.

Same store, same config, same seed, in one run. The parallel sides, on a local 2-CPU Ray
in memory mode: the experiment's fold pool (two one-thread workers, timed once with the
pool already started, as every trial after an experiment's first sees it, and once with
its start), and one fold-parallel TorchTrainer (``run_folds``, as before the pool and as
data-parallel folds still run), its launch included. The sequential side is
``train_func`` called for fold 0 and then fold 1 in this process, with 1 and 2 threads.

    .venv/bin/python benchmarks/fold_parallel.py --subjects 12 --epochs 20
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import torch
from _synthetic_store import synthetic_ccd_store

from eegtune.distributed.fold_pool import start_pool, stop_pool
from eegtune.distributed.memory_plan import WORKER_BASE_HEAP
from eegtune.distributed.resources import plan_resources
from eegtune.distributed.runtime import start_ray
from eegtune.distributed.shared_windows import share_windows
from eegtune.distributed.train import run_folds
from eegtune.distributed.trial_driver import drive_trial
from eegtune.training.config import FoldJob, TrainConfig, make_config
from eegtune.training.train_func import train_func


def sequential(job: FoldJob, hp: TrainConfig, threads: int, out: Path) -> float:
    torch.set_num_threads(threads)
    start = time.perf_counter()
    for fold in range(job.n_folds):
        train_func(make_config(replace(job, fold=fold, out_dir=str(out)), hp))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--model", default="softargmax_tcn")
    args = parser.parse_args()
    work = synthetic_ccd_store(args.subjects, prefix="eegtune-foldpar-")
    # No early stopping, so both sides do exactly the same epochs.
    hp = TrainConfig(model=args.model, max_epochs=args.epochs, patience=args.epochs)
    job = FoldJob(store=str(work / "store"), challenge=1, out_dir="", n_folds=2)

    seq1 = sequential(job, hp, 1, work / "seq1")
    seq2 = sequential(job, hp, 2, work / "seq2")

    import ray

    start_ray(num_cpus=2)
    try:
        windows = share_windows(job.store, job.challenge)
        pool_plan = plan_resources(2, n_folds=2, pool=True)
        t0 = time.perf_counter()
        pool = start_pool(pool_plan, WORKER_BASE_HEAP, windows)
        ray.get([w.__ray_ready__.remote() for w in pool[1]])
        pool_start = time.perf_counter() - t0
        warm = {}
        for name in ("first", "warm"):  # the second trial finds the workers' caches warm
            out = str(work / f"pool_{name}")
            configs = [make_config(replace(job, fold=k, out_dir=out), hp) for k in (0, 1)]
            t0 = time.perf_counter()
            drive_trial(pool[0], name, configs, out, args.epochs, lambda report: None)
            warm[name] = time.perf_counter() - t0
        stop_pool(*pool)

        plan = plan_resources(2, n_folds=2)
        start = time.perf_counter()
        par_job = replace(job, out_dir=str(work / "par"))
        result = run_folds(par_job, hp, plan, storage_path=str(work / "train"), name="bench")
        train = time.perf_counter() - start
        assert result.error is None, result.error
    finally:
        ray.shutdown()
    pool_run = warm["warm"]
    print(f"{args.subjects} subjects, 2 folds, {args.model}, {args.epochs} epochs each")
    print(f"pool: {pool_plan.describe()}")
    print("| run | seconds | sequential 1 thread / this |")
    print("|---|---|---|")
    print(f"| sequential, 1 thread | {seq1:.1f} | 1.00x |")
    print(f"| sequential, 2 threads | {seq2:.1f} | {seq1 / seq2:.2f}x |")
    print(f"| fold pool, 2 folds in parallel (pool already started) | {pool_run:.1f} "
          f"| **{seq1 / pool_run:.2f}x** |")  # fmt: skip
    print(f"| fold pool, the experiment's first trial | {warm['first']:.1f} "
          f"| {seq1 / warm['first']:.2f}x |")  # fmt: skip
    print(f"| fold pool started (once per experiment) | {pool_start:.1f} | |")
    print(f"| Ray Train, 2 folds in parallel (launch included) | {train:.1f} "
          f"| {seq1 / train:.2f}x |")  # fmt: skip


if __name__ == "__main__":
    main()
