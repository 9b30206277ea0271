"""``eegtune ensemble | submission | score``: from finished trials to a scored zip."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from eegtune import storage
from eegtune.ensembles.combiners import METHODS
from eegtune.ensembles.nested import AUTO


def cmd_ensemble(args: argparse.Namespace) -> int:
    from eegtune.ensembles import EnsembleRequest, build_ensemble, format_report

    req = EnsembleRequest(
        experiments=tuple(args.experiment),
        challenge=int(args.challenge),
        out=args.out,
        method=args.method,
        top_k=args.top_k,
        size=args.size,
        max_models=args.max_models,
        refit=args.refit,
        seeds=args.seeds,
    )
    if req.seeds:
        import ray

        from eegtune.distributed.runtime import start_ray

        start_ray(args.address, args.num_cpus)
    try:
        result = build_ensemble(req)
    finally:
        if req.seeds:
            ray.shutdown()
    print(format_report(result))
    print(f"ensemble in {storage.absolute(args.out)}")
    return 0


def cmd_submission(args: argparse.Namespace) -> int:
    from eegtune.ensembles.submission import export_submission

    info = export_submission(args.c1, args.c2, args.out)
    print(
        f"wrote {info.path.resolve()} ({info.size_bytes / 2**20:.1f} MiB): {', '.join(info.files)}"
    )
    for challenge, members in info.members.items():
        listed = "; ".join(members) if members else "none: the mean predictor"
        print(f"Challenge {challenge} members: {listed}")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from eegtune.ensembles.scoring import format_scores, score_submission

    zip_path = Path(args.submission)
    predictions = args.predictions or zip_path.with_name(f"{zip_path.stem}_predictions.parquet")
    report = score_submission(
        zip_path,
        args.bids,
        predictions,
        fast=args.fast,
        max_subjects=2 if args.smoke_test else None,
    )
    floors = None
    if args.oracle:
        oracle = json.loads(Path(args.oracle).read_text())
        floors = {c: oracle[f"challenge{c}"]["nrmse_floor"] for c in (1, 2)}
    print(format_scores(report, floors))
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ensemble", help="combine the top trials' fold models into one predictor")
    p.add_argument(
        "--experiment",
        action="append",
        required=True,
        help="a tune experiment: its folder or storage URI (repeatable)",
    )
    p.add_argument("--challenge", choices=("1", "2"), required=True)
    p.add_argument(
        "--method",
        choices=(AUTO, *METHODS),
        default=AUTO,
        help="auto: the method with the lowest nested NRMSE, with the guard after it",
    )
    p.add_argument("--top-k", type=int, default=5, help="trials in `mean`; trials --seeds retrains")
    p.add_argument("--size", type=int, default=25, help="picks of `greedy`, with replacement")
    p.add_argument(
        "--max-models",
        type=int,
        help="greedy's distinct members at most: each costs its fold models at inference, "
        "a seed bag K per seed (default: no limit)",
    )
    p.add_argument(
        "--refit",
        action="store_true",
        help="ship each member as one model trained on every subject for the epochs its "
        "folds chose (one forward pass instead of K); scored by its fold models",
    )
    p.add_argument(
        "--seeds",
        type=int,
        default=0,
        help="retrain the top-k with N new seeds (Ray); each trial and its retrainings "
        "become one more member, their seed bag (the mean of all their fold models)",
    )
    p.add_argument("--address", help="with --seeds: a Ray cluster (default: a local Ray)")
    p.add_argument("--num-cpus", type=int, help="with --seeds: CPUs for a local Ray")
    p.add_argument("--out", required=True, help="the ensemble folder (or URI) to write")
    p.set_defaults(func=cmd_ensemble)

    p = sub.add_parser("submission", help="export two ensembles as the challenge's zip")
    p.add_argument("--c1", required=True, help="the Challenge 1 ensemble folder or URI")
    p.add_argument("--c2", required=True, help="the Challenge 2 ensemble folder or URI")
    p.add_argument("--out", required=True, help="the zip to write")
    p.set_defaults(func=cmd_submission)

    p = sub.add_parser("score", help="score a submission zip as the challenge's scorer does")
    p.add_argument("--submission", required=True, help="the zip")
    p.add_argument("--bids", action="append", required=True, help="a release root (repeatable)")
    p.add_argument(
        "--fast",
        action="store_true",
        help="batches of 256 instead of the scorer's 1 (the same float32 volts)",
    )
    p.add_argument("--predictions", help="per-window Parquet (default: beside the zip)")
    p.add_argument("--oracle", help="a synthetic data set's oracle.json, to print its floors")
    p.add_argument("--smoke-test", action="store_true", help="only the first 2 subjects")
    p.set_defaults(func=cmd_score)
