"""ASHA + TPE against random search: the share of the epoch budget needed to match random.

Both arms search the same space on the same store and folds, one after the other in
this run, through ``eegtune.distributed.tune.run_tune``:

- **random**: Optuna's RandomSampler, every trial to ``max_epochs`` (FIFO, no ASHA);
- **asha+tpe**: the product's default, seeded TPE with ASHA over epochs.

The budget is counted in fold-epochs actually trained: a fold that early-stopped on
patience counts only its trained epochs, an ASHA-stopped trial only the epochs it ran.
Both arms rank trials by the searcher's objective (pooled inner-validation NRMSE).

Printed: the random arm's budget B and best objective; the share of B the ASHA+TPE arm
had spent, in trial completion order, when it first matched that best (goal <= 35%);
each arm's best pooled out-of-fold NRMSE; and the Tune/Train overhead, the share of
trial wall time not spent in training epochs.

    .venv/bin/python benchmarks/search_efficiency.py --subjects 12 --trials 24 --max-epochs 12
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
from _synthetic_store import synthetic_ccd_store

from eegtune.distributed.resources import plan_resources
from eegtune.distributed.runtime import start_ray
from eegtune.distributed.study import TRIAL_ID_ATTR, load_study
from eegtune.distributed.tune import TuneJob, run_tune


def trial_costs(job: TuneJob) -> pd.DataFrame:
    """Per trial: fold-epochs trained, seconds in epochs, wall seconds, objective, order.

    Every trial Tune ran counts towards the budget, including failed ones (their
    objective is NaN)."""

    study = load_study(job.experiment())
    by_id = {t.user_attrs.get(TRIAL_ID_ATTR): t for t in study.trials}
    rows = []
    for path in job.experiment_dir.glob("ray/*/*/result.json"):
        reports = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if not reports:
            continue
        trial = by_id.get(reports[0]["trial_id"])
        epochs = [r for r in reports if not r.get("final")]
        value = None if trial is None else trial.value
        rows.append(
            {
                "trial": None if trial is None else trial.number,
                "completed": reports[-1]["timestamp"],  # trials run one at a time here
                "objective": np.nan if value is None else value,
                "fold_epochs": sum(job.n_folds - r["folds_stopped"] for r in epochs),
                "epoch_seconds": sum(r.get("epoch_seconds", 0.0) for r in epochs),
                "wall_seconds": reports[-1]["time_total_s"],
                "oof_nrmse": next((r["oof_nrmse"] for r in reports if r.get("final")), np.nan),
            }
        )
    return pd.DataFrame(rows).sort_values("completed").reset_index(drop=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=12)
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--max-epochs", type=int, default=12)
    parser.add_argument("--space", default="softargmax_tcn")
    parser.add_argument("--folds", type=int, default=2)
    # Different seeds: with one seed, TPE's random start-up trials would be the random
    # arm's very draws, and the two arms would not be independent samples.
    parser.add_argument("--tpe-seed", type=int, default=0)
    parser.add_argument("--random-seed", type=int, default=1)
    args = parser.parse_args()
    work = synthetic_ccd_store(args.subjects, prefix="eegtune-searcheff-")

    import ray

    arms = {
        "random": ("random", "fifo", args.random_seed),
        "asha+tpe": ("tpe", "asha", args.tpe_seed),
    }
    costs = {}
    start_ray(num_cpus=2)
    try:
        # One trial at a time on the fold pool: a trial's wall time is then its own (not
        # time queued behind another trial's folds), so its share outside epochs is the
        # overhead this reports.
        plan = plan_resources(2, n_folds=args.folds, max_concurrent_trials=1, pool=True)
        for arm, (sampler, scheduler, seed) in arms.items():
            job = TuneJob(
                store=str(work / "store"),
                challenge=1,
                space=args.space,
                n_trials=args.trials,
                n_folds=args.folds,
                name=arm.replace("+", "_"),
                storage_path=str(work / "runs"),
                max_epochs=args.max_epochs,
                sampler=sampler,
                scheduler=scheduler,
                sampler_seed=seed,
            )
            run_tune(job, plan, verbose=0)
            costs[arm] = trial_costs(job)
    finally:
        ray.shutdown()

    rand, asha = costs["random"], costs["asha+tpe"]
    budget = rand["fold_epochs"].sum()
    target = rand["objective"].min()
    spent = asha["fold_epochs"].cumsum()
    reached = asha.index[asha["objective"] <= target]
    print(
        f"{args.subjects} subjects, C1, space {args.space}, {args.trials} trials per arm, "
        f"{args.folds} folds, max {args.max_epochs} epochs; {plan.describe()}"
    )
    print("| arm | trials | fold-epochs | best objective | best OOF NRMSE | overhead |")
    print("|---|---|---|---|---|---|")
    for arm, c in costs.items():
        overhead = 1 - c["epoch_seconds"].sum() / c["wall_seconds"].sum()
        print(
            f"| {arm} | {len(c)} | {c['fold_epochs'].sum()} | {c['objective'].min():.4f} | "
            f"{np.nanmin(c['oof_nrmse']):.4f} | {overhead:.0%} |"
        )
    if len(reached):
        first = reached[0]
        print(
            f"ASHA+TPE matched random search's best ({target:.4f}) at its trial "
            f"{asha.loc[first, 'trial']}, after {spent[first]} of random's {budget} "
            f"fold-epochs: {spent[first] / budget:.0%} of the budget (goal <= 35%)"
        )
    else:
        print(
            f"ASHA+TPE did not match random search's best ({target:.4f}) within its "
            f"{spent.iloc[-1]} fold-epochs ({spent.iloc[-1] / budget:.0%} of random's {budget}); "
            f"its best was {asha['objective'].min():.4f}"
        )


if __name__ == "__main__":
    main()
