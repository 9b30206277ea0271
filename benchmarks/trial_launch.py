"""Where a trial's time goes before its first epoch, measured from a real search.

A search of ``--trials`` one-epoch trials (2 folds, memory mode, no early stopping) runs
on a local 2-CPU Ray, one trial at a time, on the experiment's fold pool (or, with
``--train``, one TorchTrainer per trial as before the pool). Each trial's driver and fold
workers stamp the wall clock at each step (``driver.json``, ``fold<k>/placement_0.json``),
which gives, per trial:

- launch: the driver's start to its first fold running in a worker (the pool: the
  dispatcher handing the fold to a worker that is already up; Ray Train: its controller,
  the worker processes, torch.distributed);
- data: the first fold running to the last fold's data ready (views of the shared
  windows, or the stream's files opened);
- first epoch: data ready to the last fold's first report (compute, not overhead);
- gap: the previous trial's end to this trial's driver start (Tune's scheduling).

Beside it, as the baseline of the same run, the same two folds' epoch trained in this
process with ``train_func``.

    .venv/bin/python benchmarks/trial_launch.py --subjects 12 --trials 4
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from _synthetic_store import synthetic_ccd_store

from eegtune.distributed.experiment import DRIVER
from eegtune.distributed.resources import plan_resources
from eegtune.distributed.runtime import start_ray
from eegtune.distributed.tune import TuneJob, run_tune
from eegtune.training.config import FoldJob, TrainConfig, make_config
from eegtune.training.train_func import train_func

POINT = {"model.n_filters": 16, "model.n_blocks": 2, "model.loss": "mse", "batch_size": 64}


def in_process(store: str, out: Path) -> float:
    """The two folds' single epoch, one after another in this process, 1 thread."""
    torch.set_num_threads(1)
    hp = TrainConfig(model="softargmax_tcn", model_params={"n_filters": 16, "n_blocks": 2},
                     max_epochs=1)  # fmt: skip
    job = FoldJob(store=store, challenge=1, out_dir=str(out), n_folds=2)
    start = time.perf_counter()
    for fold in (0, 1):
        train_func(make_config(replace(job, fold=fold), hp))
    return time.perf_counter() - start


def breakdown(trial_dir: Path) -> dict[str, float]:
    driver = json.loads((trial_dir / DRIVER).read_text())["started"]
    steps = [
        json.loads((trial_dir / f"fold{k}" / "placement_0.json").read_text())["timeline"]
        for k in (0, 1)
    ]
    ended = max((trial_dir / f"fold{k}" / "metrics.json").stat().st_mtime for k in (0, 1))
    # A pool worker started with the experiment; a fold starts when the worker gets it.
    started = min(s.get("fold_received", s["worker_started"]) for s in steps)
    ready = max(s["data_ready"] for s in steps)
    return {
        "driver": driver,
        "end": ended,
        "launch": started - driver,
        "data": ready - started,
        "fixed": ready - driver,
        "first epoch": max(s["first_report"] for s in steps) - ready,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=12)
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--train", action="store_true", help="a TorchTrainer per trial")
    args = parser.parse_args()
    work = synthetic_ccd_store(args.subjects, prefix="eegtune-launch-")
    store = str(work / "store")
    baseline = in_process(store, work / "cv")

    import ray

    start_ray(num_cpus=2)
    try:
        job = TuneJob(store=store, challenge=1, space="softargmax_tcn", n_trials=args.trials,
                      n_folds=2, name="launch", storage_path=str(work / "runs"), max_epochs=1,
                      scheduler="fifo", data_mode="memory")  # fmt: skip
        start = time.perf_counter()
        plan = plan_resources(2, n_folds=2, max_concurrent_trials=1, pool=not args.train)
        table = run_tune(job, plan, verbose=0, points_to_evaluate=[POINT] * args.trials)
        wall = time.perf_counter() - start
    finally:
        ray.shutdown()
    rows = sorted((breakdown(Path(d)) for d in table["trial_dir"]), key=lambda r: r["driver"])
    for before, row in itertools.pairwise(rows):
        row["gap"] = row["driver"] - before["end"]
    how = "a TorchTrainer per trial" if args.train else "the fold pool"
    print(f"{args.subjects} subjects, {args.trials} one-epoch trials × 2 folds, memory mode, "
          f"{how}")  # fmt: skip
    print("| trial | gap s | launch s | data s | fixed cost before the first epoch s "
          "| first epoch s |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for i, r in enumerate(rows):
        gap = f"{r['gap']:.1f}" if "gap" in r else "n/a"
        print(f"| {i} | {gap} | {r['launch']:.1f} | {r['data']:.2f} | {r['fixed']:.1f} "
              f"| {r['first epoch']:.1f} |")  # fmt: skip
    fixed = float(np.mean([r["fixed"] for r in rows]))
    print(
        f"mean fixed cost {fixed:.1f} s per trial; the search took {wall:.1f} s "
        f"({wall / args.trials:.1f} s per trial, shared windows and Ray's start included) "
        f"against {baseline:.1f} s for one trial's two folds in process "
        f"({wall / args.trials / baseline:.1f}x)"
    )


if __name__ == "__main__":
    main()
