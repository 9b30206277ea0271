"""How to offer seed runs to the combiners: as seed bags, as separate members, or both.

Reads an experiment whose top ``--top-k`` trials were already retrained with ``--seeds``
new seeds (``eegtune ensemble --seeds N`` or ``benchmarks/ensemble_gain.py --seeds N``
leaves them in ``EXPERIMENT/finalists/``) and trains nothing. It scores every method
nested, with 2,000 subject resamples, over three candidate sets:

- **bags** (what ``eegtune ensemble --seeds`` does): the search's trials plus one seed bag
  per retrained trial, the mean of all its runs' fold models;
- **runs**: the search's trials plus each retrained run as a member of its own;
- **both**: trials, runs and bags.

Each row gives the method ``auto`` would choose (lowest nested NRMSE) and its gain over
the best single trial of the search, the same baseline in all three. A last line gives a
stricter baseline: the best single run of any seed, chosen nested.

    .venv/bin/python benchmarks/seed_bags.py --seeds 3 \
        --experiment /tmp/ens_bench/runs/c1_softargmax_tcn
"""

from __future__ import annotations

import argparse

from ensemble_gain import best_run_of_any_seed

from eegtune.ensembles.candidates import experiment_candidates, oof_rows, open_experiment
from eegtune.ensembles.combiners import METHODS
from eegtune.ensembles.finalists import (
    finalist_candidate,
    finalist_run_dir,
    finalist_seeds,
    seed_bags,
)
from eegtune.ensembles.nested import score_methods


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--experiment", required=True)
    ap.add_argument("--seeds", type=int, required=True, help="new seeds per retrained trial")
    ap.add_argument("--top-k", type=int, default=5)
    args = ap.parse_args()

    exp = open_experiment(args.experiment)
    trials = experiment_candidates(exp)
    top = sorted(trials, key=lambda c: c.oof_nrmse)[: args.top_k]
    runs = []
    for cand in top:
        for seed in finalist_seeds(exp, args.seeds):
            run_dir = finalist_run_dir(exp, cand, seed)
            if not run_dir.exists():
                raise SystemExit(f"{run_dir} is missing: retrain with --seeds {args.seeds} first")
            runs.append(finalist_candidate(cand, seed, run_dir))
    bags = seed_bags(top, runs)
    print(
        f"{exp.name}: {len(trials)} trials, top {len(top)} retrained with {args.seeds} new "
        f"seed(s) each; methods scored nested, {len(METHODS)} of them"
    )
    print(
        "| members offered | candidates | auto ships | nested NRMSE | gain vs best trial [95% CI] |"
    )
    print("|---|---|---|---|---|")
    for name, cands in (
        ("bags", trials + bags),
        ("runs", trials + runs),
        ("both", trials + runs + bags),
    ):
        rows, _ = oof_rows(cands)
        scores = score_methods(rows, METHODS, args.top_k, seed=exp.seed, singles=len(trials))
        pick = min(scores.methods.values(), key=lambda m: m.nested_nrmse)
        lo, hi = pick.gain_interval
        print(
            f"| {name} | {len(cands)} | {pick.method} | {pick.nested_nrmse:.4f} | "
            f"{pick.gain:+.2%} [{lo:+.2%}, {hi:+.2%}] |"
        )
    print(f"best single trial: {scores.best_single_nrmse:.4f} (OOF)")

    print(best_run_of_any_seed(trials + runs))
    print(f"mean predictor: {scores.mean_predictor_nrmse:.4f} (nested)")


if __name__ == "__main__":
    main()
