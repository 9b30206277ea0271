"""``eegtune cv | spaces | tune``: cross-validation in this process and the Ray search."""

from __future__ import annotations

import argparse
import logging

from eegtune import storage
from eegtune.cli.arguments import add_data_mode_arg, add_device_args, add_split_args
from eegtune.cli.output import progress_bar
from eegtune.distributed.fold_race import DEFAULT_CONFIDENCE, DEFAULT_KEEP
from eegtune.errors import ConfigError

logger = logging.getLogger(__name__)


def cmd_cv(args: argparse.Namespace) -> int:
    from eegtune.training.config import TrainConfig, parse_overrides
    from eegtune.training.cross_validate import run_cv

    overrides = parse_overrides(args.set or [])
    if args.smoke_test:
        overrides = {"max_epochs": 2, "patience": 2, **overrides}
    hp = TrainConfig(model=args.model, seed=args.seed).with_overrides(overrides)
    split = "release" if args.by_release else "kfold"
    bar = progress_bar(args.quiet, desc=f"cv {args.model}", unit="epoch")

    def on_report(m: dict) -> None:
        if "epoch" in m:
            bar.update(1)
            bar.set_postfix(fold=m["fold"], epoch=m["epoch"], val_rmse=f"{m['inner_val_rmse']:.4f}")
        elif m.get("done") and bar.disable:  # off a terminal: one line per fold
            logger.info(
                f"cv {args.model}: fold {m['fold']} done, best epoch {m['best_epoch']}, "
                f"out-of-fold NRMSE {m['oof_nrmse']:.4f}"
            )

    try:
        result = run_cv(
            args.store,
            int(args.challenge),
            hp,
            args.out,
            n_folds=args.folds,
            split=split,
            on_report=on_report,
            data_mode=args.data_mode,
            device=args.device,
            precision=args.precision,
        )
    finally:
        bar.close()
    print(result.data_note)
    print(result.table())
    print(f"out-of-fold predictions and checkpoints in {result.run_dir}")
    return 0


def cmd_spaces(args: argparse.Namespace) -> int:
    from eegtune.search_spaces import describe_space, list_spaces

    if args.show:
        print(describe_space(args.show))
        return 0
    for space in list_spaces():
        challenges = ",".join(str(c) for c in space.challenges)
        print(f"{space.label:<22} C{challenges:<4} {space.description}")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    import ray

    from eegtune.distributed.resources import plan_resources
    from eegtune.distributed.runtime import start_ray, wait_for_resources
    from eegtune.distributed.tracking import parse_tracking
    from eegtune.distributed.tune import TuneJob, plan_experiment_data, run_tune
    from eegtune.training.config import parse_overrides

    n_trials, max_epochs, n_folds = args.trials, args.max_epochs, args.folds
    if args.smoke_test:
        n_trials, max_epochs, n_folds = min(n_trials, 2), min(max_epochs, 2), 2
    job = TuneJob(
        store=storage.absolute(args.store),
        challenge=int(args.challenge),
        space=args.space,
        n_trials=n_trials,
        n_folds=n_folds,
        name=args.name,
        storage_path=storage.absolute(args.storage_path),
        max_epochs=max_epochs,
        seed=args.seed,
        max_failures=args.max_failures,
        sampler=args.sampler,
        scheduler=args.scheduler,
        race_confidence=args.race_confidence,
        race_keep=args.race_keep,
        fixed=parse_overrides(args.set or []),
        data_mode=args.data_mode,
        device=args.device,
        precision=args.precision,
        checkpoint_every=args.checkpoint_every,
        start_at_defaults=args.start_at_defaults,
    )
    if args.tracking:
        parse_tracking(args.tracking)  # a malformed spec fails before Ray starts
    if args.device.startswith("cuda") and not args.gpus_per_fold:
        raise ConfigError(
            "--device cuda needs --gpus-per-fold > 0, so that Ray gives each fold a GPU"
        )
    start_ray(args.address, args.num_cpus, args.object_store_memory, args.num_gpus)
    try:
        cluster = wait_for_resources(
            n_folds * args.workers_per_fold,
            args.cpus_per_worker or 1.0,
            args.gpus_per_fold / args.workers_per_fold,
            args.wait_for_resources,
        )
        plan = plan_resources(
            cluster.get("CPU", 0),
            n_folds,
            workers_per_fold=args.workers_per_fold,
            cpus_per_worker=args.cpus_per_worker,
            gpus_per_fold=args.gpus_per_fold,
            total_gpus=cluster.get("GPU", 0),
            pool=args.workers_per_fold == 1,
        )
        data, plan = plan_experiment_data(job, plan)
        print(f"resources: {plan.describe()}")
        print(data.describe())
        table = run_tune(
            job,
            plan,
            resume=args.resume,
            verbose=0 if args.quiet else 1,
            data=data,
            tracking=args.tracking,
        )
    finally:
        ray.shutdown()
    shown = [
        c for c in ("trial", "status", "val_nrmse", "oof_nrmse", "fold_oof_nrmse") if c in table
    ]
    params = [c for c in table.columns if c not in (*shown, "trial_dir", "stopped_by")]
    top = table.head(args.top)
    print(top[shown + params].to_string(index=False))
    if "stopped_by" in top:
        for _, row in top[top["status"] == "STOPPED"].iterrows():
            print(f"trial {row['trial']} stopped by {row['stopped_by']}")
    print(f"experiment in {job.experiment_uri}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cv", help="cross-validate one model configuration in this process")
    p.add_argument("--store", required=True)
    p.add_argument("--challenge", choices=("1", "2"), required=True)
    p.add_argument("--model", required=True, help="a registered model name")
    add_split_args(p)
    p.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="e.g. lr=3e-4, model.dropout=0.2"
    )
    p.add_argument("--out", required=True, help="run folder for checkpoints and predictions")
    add_data_mode_arg(p)
    add_device_args(p, gpus=False)
    p.add_argument("--smoke-test", action="store_true", help="2 epochs per fold")
    p.set_defaults(func=cmd_cv)

    p = sub.add_parser("spaces", help="list the named search spaces")
    p.add_argument("--show", metavar="NAME", help="describe one space's parameters")
    p.set_defaults(func=cmd_spaces)

    p = sub.add_parser("tune", help="search a space with Ray Tune + Optuna TPE + ASHA")
    p.add_argument("--store", required=True, help="the window store: a folder or a URI")
    p.add_argument("--challenge", choices=("1", "2"), required=True)
    p.add_argument("--space", required=True, help="a name from `eegtune spaces`")
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--max-epochs", type=int, default=30)
    p.add_argument("--name", required=True, help="experiment name (its folder)")
    p.add_argument(
        "--storage-path",
        default="tune_runs",
        help="where experiments go: a folder (shared by every node of a cluster) or a URI "
        "(s3://bucket/prefix, gs://…)",
    )
    p.add_argument("--address", help="a Ray cluster: auto or HOST:PORT (default: local Ray)")
    p.add_argument("--num-cpus", type=int, help="CPUs for a local Ray (default: all)")
    p.add_argument(
        "--num-gpus", type=float, help="GPUs for a local Ray (default: those Ray detects)"
    )
    p.add_argument(
        "--object-store-memory",
        type=int,
        metavar="BYTES",
        help="shared memory for a local Ray's object store (default: Ray's, 30%% of RAM)",
    )
    add_data_mode_arg(p)
    p.add_argument(
        "--workers-per-fold",
        type=int,
        default=1,
        help="1: folds train on the experiment's fold pool; more: data-parallel folds, a Ray "
        "Train worker group per trial",
    )
    p.add_argument("--cpus-per-worker", type=float)
    p.add_argument(
        "--checkpoint-every",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="a pool fold saves its training state when its last save is older than this, "
        "and when it ends (default 30)",
    )
    add_device_args(p, gpus=True)
    p.add_argument(
        "--wait-for-resources",
        type=float,
        default=0,
        metavar="SECONDS",
        help="on an autoscaling cluster: ask for one trial's fold workers and wait up to this "
        "long for their nodes (GPU nodes that start at min_workers 0)",
    )
    p.add_argument("--resume", action="store_true", help="continue an interrupted experiment")
    p.add_argument(
        "--tracking",
        metavar="KIND:TARGET",
        help="also send every trial's reports to tensorboard:DIR or mlflow:URI "
        "(MLflow: pip install 'eegtune[tracking]')",
    )
    p.add_argument(
        "--max-failures",
        type=int,
        default=1,
        help="restarts of a trial, and of its lost workers, from its last checkpoint",
    )
    p.add_argument("--sampler", choices=("tpe", "random"), default="tpe")
    p.add_argument(
        "--scheduler",
        choices=("asha", "fifo", "race"),
        default="asha",
        help="fifo: no early stopping; asha: stop on the pooled figure at rungs; race: ASHA "
        "plus stopping, fold by fold (paired test) and before its later folds start, a "
        "trial confidently behind the rival --race-keep names",
    )
    p.add_argument(
        "--race-confidence",
        type=float,
        default=DEFAULT_CONFIDENCE,
        help="with --scheduler race: how sure the paired test must be that a trial is worse",
    )
    p.add_argument(
        "--race-keep",
        type=float,
        default=DEFAULT_KEEP,
        help="with --scheduler race: the share of its rivals a trial may trail and not be "
        "stopped (0.25, the default; 0.5: ASHA's cut, fewer stops; 0: the leader, more "
        "stops and sooner)",
    )
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="a training setting every trial shares and the space does not search, "
        "e.g. patience=10",
    )
    p.add_argument(
        "--start-at-defaults",
        action="store_true",
        help="the first trial trains the architecture at its defaults (TrainConfig's and its "
        "own) for this search's epochs, before the sampler's draws",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--top", type=int, default=5, help="rows of the results table to print")
    p.add_argument("--smoke-test", action="store_true", help="2 trials, 2 folds, 2 epochs")
    p.set_defaults(func=cmd_tune)
