"""What ensembling gains, nested, against the best single trial, the mean and the oracle.

One run: synthesise ``--subjects`` subjects (CCD and resting state), prepare both
challenges, run one search per challenge on a local 2-CPU Ray (seeded TPE, FIFO so every
trial finishes and is a candidate), then ``build_ensemble`` with every method scored
nested, with bootstrap intervals over subjects. The table gives each method's nested
NRMSE beside the best single trial, the nested mean predictor and the oracle floor from
the generator (``oracle.json``), and the share of the mean-to-oracle gap each closes.

Goals: on Challenge 1 the chosen ensemble is >= 3% better than the best single trial,
nested, and closes >= 80% of the gap between the mean predictor and the oracle floor;
on Challenge 2 it is never worse than the mean predictor, nested.

    .venv/bin/python benchmarks/ensemble_gain.py --subjects 24 --trials 12 --work /tmp/ens_bench

A zoo: ``--c1-space softargmax_tcn,dense_attention:8:30`` runs one search per
architecture (``:N`` sets that search's trials, default ``--trials``; ``:N:E`` also its
epochs, default ``--c1-epochs``) on the same store and folds, and pools their trials as
the ensemble's candidates.

Seed bags: ``--seeds N`` retrains the top ``--top-k`` trials with N new seeds on the same
folds, and each trial with its retrainings becomes one more candidate (the mean of all
their fold models). The baseline stays the best single trial; the best single run of
any seed, a stricter one, is printed beside it.

A second data set the recipe was not chosen on: another ``--data-seed`` and
``--subjects`` in another ``--work``.

``--work`` keeps the data and experiments, so a rerun resumes the searches.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from eegtune.data.prepare import PrepareOptions, prepare
from eegtune.data.synthetic import SynthOptions, synthesize
from eegtune.distributed.resources import plan_resources
from eegtune.distributed.runtime import start_ray
from eegtune.distributed.tune import TuneJob, run_tune
from eegtune.ensembles import EnsembleRequest, build_ensemble, format_report
from eegtune.ensembles.candidates import Candidate, oof_rows
from eegtune.ensembles.nested import nested_predictions
from eegtune.metrics import nrmse


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=24)
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--c1-space", default="softargmax_tcn")
    ap.add_argument("--c2-space", default="sparse_attention")
    ap.add_argument("--c1-epochs", type=int, default=12)
    ap.add_argument("--c2-epochs", type=int, default=4)
    ap.add_argument("--method", default="auto")
    ap.add_argument("--seeds", type=int, default=0, help="new seeds per top-k trial")
    ap.add_argument("--top-k", type=int, default=5)
    ap.add_argument("--challenges", default="1,2", help="which challenges to run")
    ap.add_argument("--seed", type=int, default=0, help="the searches' (splits, sampler) seed")
    ap.add_argument(
        "--start-at-defaults", action="store_true", help="each new search's first trial"
    )
    ap.add_argument("--data-seed", type=int, default=0, help="the synthetic generator's seed")
    ap.add_argument("--work", default="/tmp/eegtune_ensemble_gain")
    args = ap.parse_args()

    work = Path(args.work)
    bids, store = work / "bids", work / "store"
    t0 = time.perf_counter()
    if not (bids / "oracle.json").exists():
        synthesize(
            SynthOptions(
                out=bids, n_subjects=args.subjects, releases=("R1", "R2"), seed=args.data_seed
            ),
            progress=False,
        )
    prepare([p for p in sorted(bids.iterdir()) if p.is_dir()], store, PrepareOptions())
    oracle = json.loads((bids / "oracle.json").read_text())
    print(f"data: {args.subjects} subjects prepared in {time.perf_counter() - t0:.0f} s")

    start_ray(num_cpus=2)
    rows, shipped_rows = [], []
    wanted = {int(c) for c in args.challenges.split(",")}
    for challenge, space, epochs in (
        (1, args.c1_space, args.c1_epochs),
        (2, args.c2_space, args.c2_epochs),
    ):
        if challenge not in wanted:
            continue
        jobs = [
            TuneJob(
                store=str(store),
                challenge=challenge,
                space=name,
                n_trials=n_trials,
                n_folds=args.folds,
                name=f"c{challenge}_{name}",
                storage_path=str(work / "runs"),
                max_epochs=space_epochs or epochs,
                seed=args.seed,
                scheduler="fifo",
                start_at_defaults=args.start_at_defaults,
            )
            for name, n_trials, space_epochs in _spaces(space, args.trials)
        ]
        t1 = time.perf_counter()
        for job in jobs:
            resume = job.experiment_dir.exists()
            run_tune(job, plan_resources(2, n_folds=args.folds), resume=resume, verbose=0)
        t_search = time.perf_counter() - t1
        t2 = time.perf_counter()
        result = build_ensemble(
            EnsembleRequest(
                experiments=tuple(str(job.experiment_dir) for job in jobs),
                challenge=challenge,
                out=str(work / f"ens_c{challenge}"),
                method=args.method,
                top_k=args.top_k,
                seeds=args.seeds,
            ),
            log=lambda _: None,
        )
        # What the recipe cost to train: every fold-epoch of the searches and the finalists.
        fold_epochs = sum(
            _epochs_trained(p)
            for job in jobs
            for p in (work / "runs" / job.name).glob("**/fold*/metrics.json")
        )
        floor = oracle[f"challenge{challenge}"]["nrmse_floor"]
        print(f"\n## Challenge {challenge}: {space}, {len(result.candidates)} candidates")
        print(
            f"search {t_search:.0f} s, ensemble {time.perf_counter() - t2:.1f} s "
            f"(with {args.seeds} new seed(s) per top-{args.top_k} trial); "
            f"{fold_epochs} fold-epochs trained in all"
        )
        print(format_report(result))
        for member in result.description["members"]:
            print(f"  member {member['label']}: weight {member['weight']:.3f}")
        if len(jobs) > 1:  # each architecture's best, to see what pooling them adds
            for job in jobs:
                own = [c.oof_nrmse for c in result.candidates if c.experiment == job.name]
                best = f"{min(own):.4f} OOF" if own else "no complete trial"
                print(f"  best of {job.name}: {best} over {len(own)} candidates")
        if args.seeds:
            print(best_run_of_any_seed(result.candidates))
        s = result.scores
        print(f"oracle floor: {floor:.4f}")
        gap = s.mean_predictor_nrmse - floor
        for name, m in s.methods.items():
            closed = (s.mean_predictor_nrmse - m.nested_nrmse) / gap if gap > 0 else float("nan")
            rows.append((challenge, name, m, closed, s, floor))
        shipped = {
            "best single trial": s.best_single_nested_nrmse,
            "mean predictor": s.mean_predictor_nrmse,
        }.get(result.shipped) or s.methods[result.shipped.split(" ")[0]].nested_nrmse
        shipped_rows.append(
            f"| {challenge} | {result.shipped} | {shipped:.4f} | {s.mean_predictor_nrmse:.4f} | "
            f"{(s.mean_predictor_nrmse - shipped) / gap:.0%} |"
        )
    print(
        "\n| challenge | method | nested NRMSE [95% CI] | naive | gain vs best single [95% CI] "
        "| best single | mean predictor | oracle floor | gap closed |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for challenge, name, m, closed, s, floor in rows:
        lo, hi = m.nested_interval
        glo, ghi = m.gain_interval
        print(
            f"| {challenge} | {name} | {m.nested_nrmse:.4f} [{lo:.4f}, {hi:.4f}] | "
            f"{m.naive_nrmse:.4f} | {m.gain:+.2%} [{glo:+.2%}, {ghi:+.2%}] | "
            f"{s.best_single_nrmse:.4f} | {s.mean_predictor_nrmse:.4f} | {floor:.4f} | "
            f"{closed:.0%} |"
        )

    print(
        "\n| challenge | shipped (after the guard) | nested NRMSE | mean predictor | gap closed |"
    )
    print("|---|---|---|---|---|")
    print("\n".join(shipped_rows))


def _spaces(spec: str, default_trials: int) -> list[tuple[str, int, int | None]]:
    """``"a,b:8:30"`` -> [("a", default_trials, None), ("b", 8, 30)]: one search per space,
    with its trials and epochs (None: the challenge's)."""
    out = []
    for part in spec.split(","):
        name, *rest = [field.strip() for field in part.split(":")]
        n = int(rest[0]) if rest and rest[0] else default_trials
        out.append((name, n, int(rest[1]) if len(rest) > 1 and rest[1] else None))
    return out


def best_run_of_any_seed(candidates: list[Candidate]) -> str:
    """A stricter baseline than the best trial: the best single run among every seed of
    every trial (each bag's runs included), chosen in-sample and chosen nested."""
    runs = list({run.trial_dir: run for c in candidates for run in c.runs()}.values())
    rows, _ = oof_rows(runs)
    scores = [nrmse(rows.target, rows.preds[:, m]) for m in range(len(runs))]
    best = int(np.argmin(scores))
    nested, _ = nested_predictions(rows, "best", shrink=False)
    return (
        f"best single run of any seed: {scores[best]:.4f} ({runs[best].label}, OOF; chosen "
        f"in-sample), {nrmse(rows.target, nested):.4f} chosen nested, among {len(runs)} runs"
    )


def _epochs_trained(metrics_file: Path) -> int:
    """Epochs a fold trained: the epochs up to its best, plus the patience it waited."""
    metrics = json.loads(metrics_file.read_text())
    config = json.loads((metrics_file.parent.parent / "config.json").read_text())
    return min(int(metrics["best_epoch"]) + 1 + int(config["patience"]), int(config["max_epochs"]))


if __name__ == "__main__":
    main()
