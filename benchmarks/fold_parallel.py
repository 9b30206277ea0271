"""Two folds trained in parallel on Ray Train against the same two folds one after another.

Same store, same config, same seed, in one run. The parallel side is one fold-parallel
TorchTrainer (``eegtune.distributed.train.run_folds``, memory mode) on a local 2-CPU Ray,
its launch and the sharing of the windows included; the sequential side is ``train_func``
called for fold 0 and then fold 1 in this process, with 1 thread and with 2 threads.

    .venv/bin/python benchmarks/fold_parallel.py --subjects 12 --epochs 10
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import torch
from _synthetic_store import synthetic_ccd_store

from eegtune.distributed.resources import plan_resources
from eegtune.distributed.runtime import start_ray
from eegtune.distributed.train import run_folds
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
    parser.add_argument("--epochs", type=int, default=10)
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
        plan = plan_resources(2, n_folds=2)
        config = {
            k: v
            for k, v in make_config(replace(job, out_dir=str(work / "par")), hp).items()
            if k != "fold"
        }
        start = time.perf_counter()
        result = run_folds(config, plan, storage_path=str(work / "train"), name="bench")
        par = time.perf_counter() - start
        assert result.error is None, result.error
    finally:
        ray.shutdown()
    print(
        f"{args.subjects} subjects, 2 folds, {args.model}, {args.epochs} epochs each; "
        f"{plan.describe()}"
    )
    print("| run | seconds | speedup of the parallel run |")
    print("|---|---|---|")
    print(f"| sequential, 1 thread | {seq1:.1f} | {seq1 / par:.2f}x |")
    print(f"| sequential, 2 threads | {seq2:.1f} | {seq2 / par:.2f}x |")
    print(f"| Ray Train, 2 folds in parallel (launch included) | {par:.1f} | 1.00x |")


if __name__ == "__main__":
    main()
