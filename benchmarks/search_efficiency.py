"""Search efficiency over seed pairs: random + FIFO, TPE + ASHA and TPE + fold racing.

For each seed pair, three arms search the same space on the same store and folds, one
after the other, through ``eegtune.distributed.tune.run_tune``:

- **random**: Optuna's RandomSampler, every trial to ``max_epochs`` (FIFO);
- **asha**: seeded TPE with ASHA over epochs (the product's default);
- **race**: the same TPE seed with ``--scheduler race`` (ASHA plus fold racing). With the
  same seed, TPE's random start-up trials are the ASHA arm's very draws, so the two
  schedulers are compared on the same first configurations.

The budget is fold-epochs actually trained (every fold-epoch a trial's driver received,
stopped trials included). The epoch a running fold is in when its trial stops is not
counted (its report is refused); that is at most one epoch per running fold and stop,
and favours the arm that stops more trials, the race arm, by up to two fold-epochs per
stop on two workers. The objective is the pooled inner-validation NRMSE the searcher
sees. Per pair it prints each arm's fold-epochs, best objective and best out-of-fold
NRMSE; the share of random's budget each TPE arm had spent, in trial completion order,
when it first matched random's best; and what racing saved against ASHA. With
``--recheck``, the trials racing stopped are run again to the end (FIFO, same folds),
and the table says whether any would have beaten the race arm's best.

    .venv/bin/python benchmarks/search_efficiency.py --pairs 5 --subjects 16 --folds 4 \\
        --trials 12 --max-epochs 10 --recheck --work /tmp/search_eff

``--work`` keeps the store and every arm's experiment: a rerun resumes where it stopped
and reprints every pair finished so far. To measure another racing rule against the same
random and ASHA arms, ``--arms-from`` names an earlier study's ``--work``: its store and
its finished random and ASHA experiments are read, and only the race arm (and its
recheck) runs in ``--work``.

    .venv/bin/python benchmarks/search_efficiency.py --pairs 5 --subjects 16 --folds 4 \\
        --trials 16 --max-epochs 10 --recheck --race-keep 0.25 \\
        --arms-from /tmp/search_eff --work /tmp/search_eff_keep25
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from eegtune.data.prepare import PrepareOptions, prepare
from eegtune.data.synthetic import SynthOptions, synthesize
from eegtune.distributed.experiment import JOURNAL, Experiment, check_resume
from eegtune.distributed.fold_race import DEFAULT_KEEP
from eegtune.distributed.resources import plan_resources
from eegtune.distributed.runtime import start_ray
from eegtune.distributed.study import TRIAL_ID_ATTR, finished_trials, load_study, results_table
from eegtune.distributed.tune import TuneJob, run_tune
from eegtune.errors import ExperimentError

ARMS = {"random": ("random", "fifo"), "asha": ("tpe", "asha"), "race": ("tpe", "race")}


def trial_costs(job: TuneJob) -> pd.DataFrame:
    """Per trial, in completion order: fold-epochs trained, objective, best OOF NRMSE, and
    whether racing stopped it. Every trial Tune ran counts, failed ones included."""
    study = load_study(job.experiment())
    by_id = {t.user_attrs.get(TRIAL_ID_ATTR): t for t in study.trials}
    rows = []
    for path in job.experiment_dir.glob("ray/*/*/result.json"):
        reports = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if not reports:
            continue
        trial = by_id.get(reports[0]["trial_id"])
        value = None if trial is None else trial.value
        rows.append(
            {
                "trial": None if trial is None else trial.number,
                "trial_id": reports[0]["trial_id"],
                "objective": np.nan if value is None else value,
                "fold_epochs": max(int(r.get("fold_epochs", 0)) for r in reports),
                "oof_nrmse": next((r["oof_nrmse"] for r in reports if "oof_nrmse" in r), np.nan),
                "race_stopped": reports[-1].get("stopped_by") == "race",
                # A stop by ASHA ends the trial without a final report.
                "asha_stopped": not reports[-1].get("final"),
                "params": {} if trial is None else trial.params,
            }
        )
    # One trial at a time: trial numbers are the completion order (Tune's timestamps are
    # whole seconds, and short stopped trials tie on them).
    return pd.DataFrame(rows).sort_values("trial").reset_index(drop=True)


def share_to_reach(arm: pd.DataFrame, target: float, budget: int) -> float:
    """The share of ``budget`` the arm had spent when it first matched ``target``; NaN
    if it never did."""
    spent = arm["fold_epochs"].cumsum()
    reached = arm.index[arm["objective"] <= target]
    return float(spent[reached[0]] / budget) if len(reached) else float("nan")


def _job(args, store: Path, work: Path, name: str, **settings) -> TuneJob:
    """One arm's (or the recheck's) experiment on the study's store, folds and epochs."""
    return TuneJob(
        store=str(store),
        challenge=1,
        space=args.space,
        n_folds=args.folds,
        name=name,
        storage_path=str(work / "runs"),
        max_epochs=args.max_epochs,
        **settings,
    )


def _started(job: TuneJob) -> bool:
    """Whether an earlier run of the study began this experiment (then it resumes)."""
    return (job.experiment_dir / JOURNAL).exists()


def _saved_record(job: TuneJob) -> dict | None:
    """The settings an earlier run saved for this arm; None if it never started."""
    try:
        return Experiment.open(job.experiment_dir).settings
    except ExperimentError:
        return None


def _check_reused(job: TuneJob) -> None:
    """An arm read from ``--arms-from`` must have finished with this study's settings."""
    recorded = _saved_record(job)
    if recorded is None:
        raise SystemExit(f"--arms-from: {job.experiment_dir} holds no experiment")
    try:  # the settings a --resume could not change: store, space, seeds, epochs, ...
        check_resume(job, recorded)
    except ExperimentError as err:
        raise SystemExit(f"--arms-from: {job.experiment_dir} is another study's: {err}") from None
    done = finished_trials(job.experiment())
    if recorded.get("n_trials") != job.n_trials or done < job.n_trials:
        raise SystemExit(
            f"--arms-from: {job.experiment_dir} finished {done} of "
            f"{recorded.get('n_trials')} trials; this study has {job.n_trials} per arm"
        )


def _check_rule(job: TuneJob) -> None:
    """A race arm this command resumes must have raced by its rule: a --resume may change
    --race-keep and --race-confidence, which would print an old rule's figures as the
    new one's."""
    recorded = _saved_record(job)
    if recorded is None:
        return
    for key in ("race_keep", "race_confidence"):
        if (was := recorded.get(key)) != getattr(job, key):
            raced = "before the setting existed" if was is None else f"with {key}={was!r}"
            raise SystemExit(
                f"{job.experiment_dir} raced {raced}, this command asks for "
                f"{getattr(job, key)!r}: give the same rule, or another --work"
            )


def run_pair(args, store: Path, work: Path, pair: int, plan) -> dict:
    tpe_seed, random_seed = 2 * pair, 2 * pair + 1
    costs: dict[str, pd.DataFrame] = {}
    for arm, (sampler, scheduler) in ARMS.items():
        reused = args.arms_from is not None and arm != "race"
        job = _job(
            args,
            store,
            Path(args.arms_from) if reused else work,
            f"pair{pair}_{arm}",
            n_trials=args.trials,
            sampler=sampler,
            scheduler=scheduler,
            sampler_seed=random_seed if arm == "random" else tpe_seed,
            race_confidence=args.race_confidence,
            race_keep=args.race_keep,
        )
        if reused:
            _check_reused(job)
        else:
            if arm == "race":
                _check_rule(job)
            run_tune(job, plan, resume=_started(job), verbose=0)
        costs[arm] = trial_costs(job)
    result = summarize(costs)
    if args.recheck:
        result.update(recheck(args, store, work, pair, plan, costs["race"]))
    return result


def summarize(costs: dict[str, pd.DataFrame]) -> dict:
    rand = costs["random"]
    budget, target = int(rand["fold_epochs"].sum()), float(rand["objective"].min())
    out = {"random_budget": budget, "random_best": target, "arms": {}}
    for arm, c in costs.items():
        out["arms"][arm] = {
            "trials": len(c),
            "fold_epochs": int(c["fold_epochs"].sum()),
            "best_objective": float(c["objective"].min()),
            "best_oof": float(np.nanmin(c["oof_nrmse"])),
            "share_to_random_best": share_to_reach(c, target, budget),
            "race_stopped": int(c["race_stopped"].sum()),
            "asha_stopped": int(c["asha_stopped"].sum()),
        }
    asha, race = out["arms"]["asha"], out["arms"]["race"]
    out["race_saving"] = 1 - race["fold_epochs"] / asha["fold_epochs"]
    # Quality-matched: the race arm's fold-epochs to reach the ASHA arm's final best,
    # against the ASHA arm's own fold-epochs to get there.
    asha_target = asha["best_objective"]
    asha_to = share_to_reach(costs["asha"], asha_target, asha["fold_epochs"])
    race_to = share_to_reach(costs["race"], asha_target, asha["fold_epochs"])
    out["race_saving_at_asha_best"] = (
        1 - race_to / asha_to if np.isfinite(race_to) else float("nan")
    )
    return out


def recheck(args, store: Path, work: Path, pair: int, plan, race: pd.DataFrame) -> dict:
    """Run the trials racing stopped to the end; count those that would have become the
    race arm's best."""
    stopped = race[race["race_stopped"]]
    if stopped.empty:
        return {"rechecked": 0, "would_have_won": 0}
    job = _job(
        args,
        store,
        work,
        f"pair{pair}_recheck",
        n_trials=len(stopped),
        sampler="random",
        scheduler="fifo",
        sampler_seed=2 * pair,
    )
    resume = _started(job)
    done = finished_trials(job.experiment()) if resume else 0
    points = list(stopped["params"])[done:]  # a resumed recheck runs only the rest
    run_tune(job, plan, resume=resume, verbose=0, points_to_evaluate=points or None)
    finished = results_table(job.experiment())
    best = float(race["objective"][~race["race_stopped"]].min())
    return {
        "rechecked": len(finished),
        "rechecked_best": float(finished["val_nrmse"].min()),
        "would_have_won": int((finished["val_nrmse"] < best).sum()),
    }


SETTINGS = ("subjects", "space", "trials", "folds", "max_epochs", "race_confidence", "race_keep")


def print_tables(args, results: dict[int, dict]) -> None:
    # Each pair saves the settings it ran with; --tables prints those, not its own flags.
    runs = {json.dumps(r.get("settings")) for r in results.values()}
    settings = next(iter(results.values())).get("settings") if len(runs) == 1 else None
    s = settings or {k: getattr(args, k) for k in SETTINGS}
    print(
        f"\n{s['subjects']} subjects, C1, space {s['space']}, {s['trials']} trials per arm, "
        f"{s['folds']} folds, max {s['max_epochs']} epochs, race confidence "
        f"{s['race_confidence']}, race keep {s['race_keep']}"
        + ("" if settings else " (this command's flags: the pairs saved none, or differ)")
    )
    print(
        "\n| pair (TPE / random seed) | arm | fold-epochs | best objective | best OOF NRMSE "
        "| share of random's budget to match its best | stopped by racing | stopped by ASHA |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for pair, r in results.items():
        for arm, a in r["arms"].items():
            share = a["share_to_random_best"]
            print(
                f"| {pair} ({2 * pair} / {2 * pair + 1}) | {arm} | {a['fold_epochs']} | "
                f"{a['best_objective']:.4f} | {a['best_oof']:.4f} | "
                f"{'never' if np.isnan(share) else f'{share:.0%}'} | {a['race_stopped']} | "
                f"{a.get('asha_stopped', '–')} |"
            )
    print(
        "\n| pair | race ÷ ASHA fold-epochs | race's saving at ASHA's best | race best − ASHA "
        "best | stopped trials rerun | would have beaten race's best |"
    )
    print("|---|---|---|---|---|---|")
    for pair, r in results.items():
        a, c = r["arms"]["asha"], r["arms"]["race"]
        at = r["race_saving_at_asha_best"]
        print(
            f"| {pair} | {c['fold_epochs'] / a['fold_epochs']:.2f} | "
            f"{'not reached' if np.isnan(at) else f'{at:+.0%}'} | "
            f"{c['best_objective'] - a['best_objective']:+.4f} | {r.get('rechecked', '–')} | "
            f"{r.get('would_have_won', '–')} |"
        )
    shares = np.array([r["arms"]["asha"]["share_to_random_best"] for r in results.values()])
    savings = [r["race_saving"] for r in results.values()]
    met = int((shares <= 0.35).sum())  # NaN (never reached) compares False
    median = np.median(np.where(np.isnan(shares), np.inf, shares))  # never = worst
    print(
        f"\nASHA + TPE reached random's best within 35% of random's budget in {met} of "
        f"{len(results)} pair(s) (goal: 4 of 5); median share "
        f"{'never' if np.isinf(median) else f'{median:.0%}'} (a pair where it never did "
        f"counts as the worst)."
    )
    print(
        f"Racing saved {np.median(savings):.0%} of ASHA + TPE's fold-epochs (median over "
        f"pairs; goal >= 30% at the same final quality). Pairs where a stopped trial would "
        f"have beaten the race arm's best: "
        f"{sum(r.get('would_have_won', 0) > 0 for r in results.values())} (goal <= 1 in 5)."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--first-pair", type=int, default=0)
    parser.add_argument("--subjects", type=int, default=16)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--max-epochs", type=int, default=10)
    parser.add_argument("--space", default="softargmax_tcn")
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--race-confidence", type=float, default=0.9)
    parser.add_argument("--race-keep", type=float, default=DEFAULT_KEEP)
    parser.add_argument("--recheck", action="store_true", help="rerun race-stopped trials")
    parser.add_argument("--work", default="/tmp/eegtune_search_efficiency")
    parser.add_argument(
        "--arms-from",
        default=None,
        help="an earlier study's --work: reuse its store and random and ASHA arms",
    )
    parser.add_argument(
        "--tables", action="store_true", help="print the tables of every pair saved in --work"
    )
    args = parser.parse_args()

    work = Path(args.work)
    if args.tables:  # pairs run in several sittings (--first-pair), summarised together
        # The header shows this command's settings: give the ones the pairs ran with.
        saved = {
            int(m.group(1)): json.loads(p.read_text())
            for p in work.glob("pair*.json")
            if (m := re.fullmatch(r"pair(\d+)\.json", p.name))
        }
        print_tables(args, dict(sorted(saved.items())))
        return
    if args.arms_from:  # the earlier study's store, so the arms train on the same windows
        if Path(args.arms_from).resolve() == work.resolve():
            raise SystemExit("--arms-from must name another study's --work than this one")
        store = Path(args.arms_from) / "store"
        if not (store / "manifest.json").exists():
            raise SystemExit(f"--arms-from: no window store at {store}")
    else:
        store = work / "store"
        if not (work / "bids" / "oracle.json").exists():
            synthesize(
                SynthOptions(
                    out=work / "bids", n_subjects=args.subjects, tasks=("contrastChangeDetection",)
                ),
                progress=False,
            )
        prepare([work / "bids"], store, PrepareOptions())

    import ray

    results: dict[int, dict] = {}
    start_ray(num_cpus=2)
    try:
        # One trial at a time on the fold pool: a trial's folds then fill the workers in
        # fold order, so a trial that loses on its first folds has later ones to skip.
        plan = plan_resources(2, n_folds=args.folds, max_concurrent_trials=1, pool=True)
        for pair in range(args.first_pair, args.first_pair + args.pairs):
            results[pair] = run_pair(args, store, work, pair, plan)
            results[pair]["settings"] = {k: getattr(args, k) for k in SETTINGS}
            (work / f"pair{pair}.json").write_text(json.dumps(results[pair], indent=1))
            print_tables(args, results)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
