"""`eegtune tune` against the loop a user would write instead, the same work on 2 cores.

For each store, two child processes run one after the other, each timed from its start to
its exit (Python, imports and Ray included):

- **tune**: ``eegtune tune`` on a local 2-CPU Ray, FIFO (no early stopping), TPE seeded;
- **loop**: a plain Optuna TPE loop, seeded alike, that calls
  ``eegtune.training.cross_validate.run_cv`` for each trial, every fold in its one process
  (torch's default 2 threads).

Same space, trials, folds and epochs (patience above the epochs, so no fold stops early).
TPE's first trials are its seeded random start-up draws, so both arms train the same
configurations; the script checks that, and prints the ratio tune / loop. It also reads
the tune arm's folds: the fixed cost of starting a fold (once it is submitted and a
worker is free, to its data ready), the share of the folds' time in the workers not spent
in epochs, and what reporting and saving cost against the epochs.

Stores: the demo's 8 synthetic subjects (R1 and R2 of ``eegtune synth --subjects 12
--releases R1,R2,R3 --seed 0``) and, with ``--skeleton``, 30 subjects laid under the real
R1 metadata (real recording lengths, CCD runs only).

    .venv/bin/python benchmarks/search_vs_loop.py --skeleton ../shared/hbn-r1-metadata
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from eegtune.data.prepare import PrepareOptions, prepare
from eegtune.data.synthetic import SynthOptions, synthesize
from eegtune.training.data_modes import gib, store_size

LOOP = r"""
import json, sys
import optuna
from eegtune.search_spaces import get_space
from eegtune.training.config import TrainConfig
from eegtune.training.cross_validate import run_cv

store, out, space_name, trials, folds, epochs, seed = sys.argv[1:8]
trials, folds, epochs, seed = int(trials), int(folds), int(epochs), int(seed)
optuna.logging.set_verbosity(optuna.logging.WARNING)
space = get_space(space_name)
study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
params = []
for i in range(trials):
    trial = study.ask()
    constants = space.define(trial) or {}
    flat = {**trial.params, **constants, "max_epochs": epochs, "patience": epochs + 1,
            "seed": seed}
    result = run_cv(store, 1, TrainConfig.from_flat(flat), f"{out}/trial{i}", n_folds=folds)
    study.tell(trial, result.pooled_nrmse)
    params.append(trial.params)
print(json.dumps(params))
"""


def demo_store(work: Path) -> Path:
    bids = work / "bids"
    synthesize(SynthOptions(out=bids, n_subjects=12, releases=("R1", "R2", "R3"), seed=0),
               progress=False)  # fmt: skip
    store = work / "store"
    prepare([bids / "R1_L100_bdf", bids / "R2_L100_bdf"], store, PrepareOptions())
    return store


def real_length_store(work: Path, skeleton: Path, subjects: int) -> Path:
    bids = work / "bids"
    options = SynthOptions(out=bids, n_subjects=subjects, skeleton=skeleton,
                           tasks=("contrastChangeDetection",), seed=0)  # fmt: skip
    synthesize(options, progress=False)
    store = work / "store"
    prepare([bids / "R1_L100_bdf"], store, PrepareOptions())
    return store


def timed(cmd: list[str], log: Path) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    log.write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        sys.exit(f"{cmd[:4]} failed; see {log}")
    return wall, done.stdout


def tune_figures(experiment: Path) -> dict[str, float]:
    """From the tune arm's folds: the fixed cost of starting a fold (from the moment both
    the fold was submitted and a worker was free for it, to the fold's data ready in that
    worker), the share of the folds' time in a worker not spent in epochs, and reporting
    and saving against the epochs' time."""
    folds, fold_seconds, epoch_seconds, reporting = [], 0.0, 0.0, 0.0
    for trial_dir in sorted((experiment / "folds").glob("*")):
        submitted = json.loads((trial_dir / "driver.json").read_text())["started"]
        for f in trial_dir.glob("fold*/placement_0.json"):
            p = json.loads(f.read_text())
            folds.append((p["worker"], submitted, p["timeline"]))
            fold_seconds += p["timeline"]["done"] - p["timeline"]["fold_received"]
            epoch_seconds += p["seconds_in_epochs"]
            reporting += p["seconds_reporting"]
    starts = []
    for worker in {w for w, _, _ in folds}:
        mine = sorted((t["fold_received"], s, t) for w, s, t in folds if w == worker)
        free = mine[0][2]["worker_started"]
        for _, submitted, t in mine:
            starts.append(t["data_ready"] - max(submitted, free))
            free = t["done"]
    return {
        "fixed": float(np.mean(starts)),
        "non_epoch_share": 1 - epoch_seconds / fold_seconds,
        "reporting_share": reporting / epoch_seconds,
    }


def compare(name: str, store: Path, work: Path, args: argparse.Namespace) -> dict:
    size = store_size(store, 1)
    tune = [
        sys.executable, "-m", "eegtune.cli", "tune", "--store", str(store), "--challenge", "1",
        "--space", args.space, "--trials", str(args.trials), "--folds", str(args.folds),
        "--max-epochs", str(args.epochs), "--scheduler", "fifo", "--name", "arm",
        "--storage-path", str(work / "tune"), "--num-cpus", "2", "--quiet",
        "--set", f"patience={args.epochs + 1}", "--seed", str(args.seed),
    ]  # fmt: skip
    loop = [sys.executable, "-c", LOOP, str(store), str(work / "loop"), args.space,
            str(args.trials), str(args.folds), str(args.epochs), str(args.seed)]  # fmt: skip
    tune_wall, _ = timed(tune, work / "tune.log")
    loop_wall, loop_out = timed(loop, work / "loop.log")
    figures = tune_figures(work / "tune" / "arm")

    from eegtune.distributed.study import load_study
    from eegtune.distributed.tune import TuneJob

    job = TuneJob(store=str(store), challenge=1, space=args.space, n_trials=args.trials,
                  n_folds=args.folds, name="arm", storage_path=str(work / "tune"))  # fmt: skip
    study = load_study(job.experiment())
    tuned = sorted(json.dumps(t.params, sort_keys=True) for t in study.trials)
    looped = sorted(json.dumps(p, sort_keys=True) for p in json.loads(loop_out.splitlines()[-1]))
    return {
        "store": f"{name} ({size.windows} C1 windows, {gib(size.stored_bytes)})",
        "tune": tune_wall,
        "loop": loop_wall,
        "same_configs": tuned == looped,
        **figures,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--skeleton", type=Path, help="real metadata for the real-length store")
    ap.add_argument("--real-subjects", type=int, default=30)
    ap.add_argument("--space", default="softargmax_tcn")
    ap.add_argument("--trials", type=int, default=4)
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rows = []
    work = Path(tempfile.mkdtemp(prefix="eegtune-vsloop-"))
    rows.append(compare("8 synthetic subjects (the demo's)", demo_store(work / "demo"),
                        work / "demo", args))  # fmt: skip
    if args.skeleton:
        store = real_length_store(work / "real", args.skeleton, args.real_subjects)
        rows.append(compare(f"{args.real_subjects} real-length subjects", store,
                            work / "real", args))  # fmt: skip
    else:
        print("no --skeleton: the real-length store is skipped")
    print(f"{args.trials} trials × {args.folds} folds × {args.epochs} epochs, {args.space}, "
          f"FIFO, 2 CPUs; work in {work}")  # fmt: skip
    print("| store | `eegtune tune` | Optuna loop | tune / loop | same configurations | "
          "fixed cost of a fold's start | trial fold time not in epochs | reporting and saving "
          "/ epoch time |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['store']} | {r['tune']:.1f} s | {r['loop']:.1f} s | "
              f"**{r['tune'] / r['loop']:.2f}×** | {'yes' if r['same_configs'] else 'NO'} | "
              f"{r['fixed']:.2f} s | {r['non_epoch_share']:.1%} | "
              f"{r['reporting_share']:.2%} |")  # fmt: skip


if __name__ == "__main__":
    main()
