"""Per-group learning rates against one rate: the ``sparse_attention`` search both ways.

Two arms search the same architecture on the same store, folds and trial budget, one
after the other in this run, through ``eegtune.distributed.tune.run_tune`` with seeded
TPE, and by default FIFO: every trial trains to the end (or to early stopping) and has
out-of-fold predictions, where ASHA would leave only the few that reach its last rung
(``--scheduler asha`` for the product's default):

- **per-group**: the registered ``sparse_attention`` space: base ``lr``, the attention and
  head groups' multipliers (log 0.1–10) and a warm-up, beside ``head_ratio``;
- **one rate**: the same space without the multipliers and the warm-up (every group at
  ``lr``, plain cosine), registered here as ``sparse_attention_one_rate``.

Both arms of a seed pair share the seed, which drives the subject split, TPE and the
training. Printed per arm: trials, fold-epochs trained, the best and the median pooled
out-of-fold NRMSE over its COMPLETE trials, how many trials got below 0.9 (the mean
predictor scores about 1.0), the fold-epochs it had spent, in trial completion order,
when it first reached the other arm's best OOF NRMSE, and its best trial's rates.

    cd benchmarks && ../.venv/bin/python group_learning_rates.py --seeds 0 1
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from _synthetic_store import synthetic_ccd_store
from search_efficiency import trial_costs

from eegtune.distributed.resources import plan_resources
from eegtune.distributed.runtime import start_ray
from eegtune.distributed.study import load_study
from eegtune.distributed.tune import TuneJob, run_tune
from eegtune.search_spaces import SearchSpace, get_space, register_space
from eegtune.search_spaces.subspaces import suggest_recipe, suggest_sparse_attention

ONE_RATE = "sparse_attention_one_rate"


def one_rate_space(trial: optuna.Trial) -> dict[str, Any]:
    suggest_sparse_attention(trial, group_rates=False)
    suggest_recipe(trial)
    return {"model": "sparse_attention"}


def register_one_rate() -> None:
    per_group = get_space("sparse_attention")
    register_space(
        SearchSpace(
            name=ONE_RATE,
            version=per_group.version,
            description="sparse_attention with one learning rate for every group, no warm-up",
            challenges=per_group.challenges,
            define=one_rate_space,
        ),
        replace=True,
    )


def reach(costs: pd.DataFrame, target: float) -> str:
    """Fold-epochs spent when this arm's OOF NRMSE first got to ``target`` (or never)."""
    spent = costs["fold_epochs"].cumsum()
    hit = costs.index[costs["oof_nrmse"] <= target]
    if not len(hit):
        return f"not within {spent.iloc[-1]}"
    return f"{spent[hit[0]]} (trial {costs.loc[hit[0], 'trial']})"


def best_rates(job: TuneJob, costs: pd.DataFrame) -> str:
    """The learning-rate settings of the arm's best trial by OOF NRMSE."""
    study = load_study(job.experiment())
    trial = study.trials[int(costs.loc[costs["oof_nrmse"].idxmin(), "trial"])]
    keys = ("lr", "lr_mult.attention", "lr_mult.head", "warmup_epochs")
    return ", ".join(f"{k} {trial.params[k]:.3g}" for k in keys if k in trial.params)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=24)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--max-epochs", type=int, default=24)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--scheduler", choices=("fifo", "asha"), default="fifo")
    # A previous run's work folder (printed at the start): its store is reused and its
    # finished searches are resumed, i.e. only summarised again.
    parser.add_argument("--work", type=Path)
    args = parser.parse_args()
    register_one_rate()
    if args.work is not None and (args.work / "store").exists():
        work = args.work
    else:
        work = synthetic_ccd_store(args.subjects, prefix="eegtune-grouplr-")
    print(f"work folder: {work}", flush=True)

    import ray

    arms = {"per-group": "sparse_attention", "one rate": ONE_RATE}
    rows = []
    start_ray(num_cpus=2)
    try:
        plan = plan_resources(2, n_folds=args.folds)
        for seed in args.seeds:
            costs, params = {}, {}
            for arm, space in arms.items():
                job = TuneJob(
                    store=str(work / "store"),
                    challenge=1,
                    space=space,
                    n_trials=args.trials,
                    n_folds=args.folds,
                    name=f"{space}_seed{seed}",
                    storage_path=str(work / "runs"),
                    max_epochs=args.max_epochs,
                    seed=seed,
                    scheduler=args.scheduler,
                )
                run_tune(job, plan, verbose=0, resume=job.experiment_dir.exists())
                costs[arm] = trial_costs(job)
                params[arm] = best_rates(job, costs[arm])
            (a, ca), (b, cb) = costs.items()
            best = {arm: np.nanmin(c["oof_nrmse"]) for arm, c in costs.items()}
            for arm, c, other in ((a, ca, b), (b, cb, a)):
                row = {
                    "seed": seed,
                    "arm": arm,
                    "trials": len(c),
                    "complete": int(c["oof_nrmse"].notna().sum()),
                    "fold-epochs": int(c["fold_epochs"].sum()),
                    "best objective": f"{c['objective'].min():.4f}",
                    "best OOF NRMSE": f"{best[arm]:.4f}",
                    "median OOF NRMSE": f"{c['oof_nrmse'].median():.4f}",
                    "trials below 0.9": int((c["oof_nrmse"] < 0.9).sum()),
                    "fold-epochs to reach the other's best": reach(c, best[other]),
                    "best trial's rates": params[arm],
                }
                rows.append(row)
                print(f"seed {seed}, {arm}: {row}", flush=True)  # kept if a later arm fails
    finally:
        ray.shutdown()

    print(
        f"{args.subjects} subjects, C1, {args.trials} trials per arm, {args.folds} folds, "
        f"max {args.max_epochs} epochs, TPE + {args.scheduler}; {plan.describe()}"
    )
    table = pd.DataFrame(rows)
    print("| " + " | ".join(table.columns) + " |")
    print("|" + "---|" * len(table.columns))
    for row in table.itertuples(index=False):
        print("| " + " | ".join(str(v) for v in row) + " |")


if __name__ == "__main__":
    main()
