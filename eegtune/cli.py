"""The ``eegtune`` command line: parses arguments and calls library functions."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from eegtune import __version__
from eegtune.ensembles.combiners import METHODS

C1_TASK = "contrastChangeDetection"


def _csv(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def _tasks(values: list[str]) -> tuple[str, ...]:
    """Accept both ``--tasks a b`` and ``--tasks a,b``."""
    return tuple(t for v in values for t in _csv(v))


def cmd_synth(args: argparse.Namespace) -> int:
    from eegtune.data.synthetic import SynthOptions, synthesize

    n_subjects, tasks = args.subjects, _tasks(args.tasks)
    if args.smoke_test:
        n_subjects, tasks = min(n_subjects or 2, 2), (C1_TASK,)
    opts = SynthOptions(
        out=Path(args.out),
        n_subjects=n_subjects,
        releases=_csv(args.releases),
        sfreq=args.sfreq,
        fmt=args.format,
        tasks=tasks,
        skeleton=Path(args.skeleton) if args.skeleton else None,
        seed=args.seed,
    )
    oracle = synthesize(opts, progress=not args.quiet)
    c1, c2 = oracle["challenge1"], oracle["challenge2"]
    print(f"wrote {len(oracle['subjects'])} subjects to {args.out}: {', '.join(oracle['roots'])}")
    floor1 = "n/a" if c1["nrmse_floor"] is None else f"{c1['nrmse_floor']:.3f}"
    floor2 = "n/a" if c2["nrmse_floor"] is None else f"{c2['nrmse_floor']:.3f}"
    print(f"oracle floor  C1 NRMSE {floor1} over {c1['n_trials']} trials")
    print(f"              C2 NRMSE {floor2} over {c2['n_windows']} windows")
    print(f"latent truth  {Path(args.out) / 'oracle.json'}")
    return 0


class _PrepareProgress:
    """A tqdm bar over recordings with windows written and recordings skipped."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar = None
        self.windows = 0
        self.skipped = 0

    def start(self, total_recordings: int) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(
            total=total_recordings, desc="prepare", unit="rec", disable=not self.enabled
        )

    def update(self, record: dict) -> None:
        self.windows += sum(o["rows"] for o in record["outputs"].values())
        self.skipped += len({s["file"] for s in record["skipped"]})
        self.bar.set_postfix(windows=self.windows, skipped=self.skipped, refresh=False)
        self.bar.update(record["n_recordings"])

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def cmd_prepare(args: argparse.Namespace) -> int:
    from eegtune.data.errors import DatasetError
    from eegtune.data.info import describe_store
    from eegtune.data.prepare import PrepareOptions, StrictModeError, prepare

    challenges = (1, 2) if args.challenge == "both" else (int(args.challenge),)
    options = PrepareOptions(
        challenges=challenges,
        c2_tasks=_tasks(args.c2_tasks),
        dtype=args.dtype,
        strict=args.strict,
        workers=args.workers,
        address=args.address,
    )
    roots = [Path(b) for b in args.bids]
    progress = _PrepareProgress(enabled=not args.quiet)
    try:
        summary = prepare(
            roots,
            Path(args.out),
            options,
            progress=progress,
            max_subjects=2 if args.smoke_test else None,
        )
    except (DatasetError, StrictModeError) as exc:
        print(f"eegtune prepare: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "\neegtune prepare: interrupted. Finished subjects are kept; "
            "rerun the same command to resume.",
            file=sys.stderr,
        )
        return 130
    finally:
        progress.close()
    print(
        f"prepared {summary.units} subjects ({summary.reused} unchanged, reused) from "
        f"{summary.recordings} recordings"
    )
    print(describe_store(Path(args.out)))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from eegtune.data.info import describe_store, verify_store
    from eegtune.data.store import load_manifest

    store = Path(args.store)
    if args.json:
        manifest = load_manifest(store)
        if manifest is None:
            print(f"eegtune info: error: {store}: no manifest.json", file=sys.stderr)
            return 2
        print(json.dumps(manifest, indent=1))
        return 0
    try:
        print(describe_store(store, verify=args.verify))
    except FileNotFoundError as exc:
        print(f"eegtune info: error: {exc}", file=sys.stderr)
        return 2
    if args.verify:
        return 1 if verify_store(store, load_manifest(store) or {"files": []}) else 0
    return 0


def cmd_cv(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from eegtune.training.config import TrainConfig, parse_overrides
    from eegtune.training.cross_validate import run_cv

    overrides = parse_overrides(args.set or [])
    if args.smoke_test:
        overrides = {"max_epochs": 2, "patience": 2, **overrides}
    hp = TrainConfig(model=args.model, seed=args.seed).with_overrides(overrides)
    split = "release" if args.by_release else "kfold"
    bar = tqdm(desc=f"cv {args.model}", unit="epoch", disable=args.quiet)

    def on_report(m: dict) -> None:
        if "epoch" in m:
            bar.update(1)
            bar.set_postfix(fold=m["fold"], epoch=m["epoch"], val_rmse=f"{m['inner_val_rmse']:.4f}")

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
        )
    except FileNotFoundError as exc:
        print(f"eegtune cv: error: {exc}", file=sys.stderr)
        return 2
    finally:
        bar.close()
    print(result.data_note)
    print(result.table())
    print(f"out-of-fold predictions and checkpoints in {result.run_dir}")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from eegtune.training.audit import audit_store

    split = "release" if args.by_release else "kfold"
    try:
        text, problems = audit_store(args.store, int(args.challenge), split, args.folds, args.seed)
    except FileNotFoundError as exc:
        print(f"eegtune audit: error: {exc}", file=sys.stderr)
        return 2
    print(text)
    return 1 if problems else 0


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

    from eegtune.distributed.resources import ResourceError, plan_resources
    from eegtune.distributed.runtime import start_ray
    from eegtune.distributed.tune import TuneJob, plan_experiment_data, run_tune
    from eegtune.training.config import parse_overrides

    n_trials, max_epochs, n_folds = args.trials, args.max_epochs, args.folds
    if args.smoke_test:
        n_trials, max_epochs, n_folds = min(n_trials, 2), min(max_epochs, 2), 2
    job = TuneJob(
        store=str(Path(args.store).resolve()),
        challenge=int(args.challenge),
        space=args.space,
        n_trials=n_trials,
        n_folds=n_folds,
        name=args.name,
        storage_path=str(Path(args.storage_path).resolve())
        if "://" not in args.storage_path
        else args.storage_path,
        max_epochs=max_epochs,
        seed=args.seed,
        max_failures=args.max_failures,
        sampler=args.sampler,
        scheduler=args.scheduler,
        fixed=parse_overrides(args.set or []),
        data_mode=args.data_mode,
    )
    start_ray(args.address, args.num_cpus, args.object_store_memory)
    try:
        plan = plan_resources(
            ray.cluster_resources().get("CPU", 0),
            n_folds,
            workers_per_fold=args.workers_per_fold,
            cpus_per_worker=args.cpus_per_worker,
        )
        data, plan = plan_experiment_data(job, plan)
        print(f"resources: {plan.describe()}")
        print(data.describe())
        table = run_tune(job, plan, resume=args.resume, verbose=0 if args.quiet else 1, data=data)
    except (ResourceError, FileExistsError, ValueError, NotImplementedError) as exc:
        print(f"eegtune tune: error: {exc}", file=sys.stderr)
        return 2
    finally:
        ray.shutdown()
    shown = [
        c for c in ("trial", "status", "val_nrmse", "oof_nrmse", "fold_oof_nrmse") if c in table
    ]
    params = [c for c in table.columns if c not in (*shown, "trial_dir")]
    print(table[shown + params].head(args.top).to_string(index=False))
    print(f"experiment in {job.experiment_dir}")
    return 0


def cmd_ensemble(args: argparse.Namespace) -> int:
    from eegtune.ensembles import EnsembleRequest, build_ensemble, format_report

    req = EnsembleRequest(
        experiments=tuple(args.experiment),
        challenge=int(args.challenge),
        out=args.out,
        method=args.method,
        top_k=args.top_k,
        size=args.size,
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
    print(f"ensemble in {Path(args.out).resolve()}")
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
        log=(lambda _: None) if args.quiet else print,
        max_subjects=2 if args.smoke_test else None,
    )
    floors = None
    if args.oracle:
        oracle = json.loads(Path(args.oracle).read_text())
        floors = {c: oracle[f"challenge{c}"]["nrmse_floor"] for c in (1, 2)}
    print(format_scores(report, floors))
    return 0


def _add_split_args(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("--folds", type=int, default=5, help="subject-grouped K folds")
    group.add_argument("--by-release", action="store_true", help="leave one release out")
    p.add_argument("--seed", type=int, default=0, help="drives the splits, init and data order")


def _add_data_mode_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-mode",
        choices=("auto", "memory", "stream"),
        default="auto",
        help="memory: windows held once in memory; stream: read from the store every "
        "epoch in bounded memory; auto: memory when it fits (default)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eegtune",
        description="Hyperparameter search and ensembling for the EEG 2025 challenge.",
    )
    parser.add_argument("--version", action="version", version=f"eegtune {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="write an HBN-shaped synthetic BIDS data set")
    p.add_argument("--out", required=True, help="folder for the release roots and oracle.json")
    p.add_argument(
        "--subjects", type=int, default=None, help="subjects (default 6, or all of --skeleton)"
    )
    p.add_argument("--releases", default="R1", help="comma-separated releases, e.g. R1,R2")
    p.add_argument("--sfreq", type=int, choices=(100, 500), default=100)
    p.add_argument("--format", choices=("bdf", "set"), default="bdf")
    p.add_argument("--tasks", nargs="+", default=[f"{C1_TASK},RestingState"])
    p.add_argument("--skeleton", help="a real release's metadata to lay signals under")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smoke-test", action="store_true", help="2 subjects, CCD only")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("prepare", help="cut BIDS releases into the Parquet window store")
    p.add_argument("--bids", action="append", required=True, help="a release root (repeatable)")
    p.add_argument("--out", required=True, help="the window store folder")
    p.add_argument("--challenge", choices=("1", "2", "both"), default="both")
    p.add_argument("--c2-tasks", nargs="+", default=[C1_TASK], help="tasks for Challenge 2")
    p.add_argument("--workers", type=int, default=1, help="parallel processes")
    p.add_argument("--dtype", choices=("float32", "float16"), default="float32")
    p.add_argument("--strict", action="store_true", help="stop with an error on any skip")
    p.add_argument("--smoke-test", action="store_true", help="only the first 2 subjects")
    p.add_argument(
        "--address",
        help="run each subject as a Ray task on this cluster (auto, HOST:PORT, or local)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("info", help="summarise a window store")
    p.add_argument("store")
    p.add_argument("--verify", action="store_true", help="recheck every file's checksum")
    p.add_argument("--json", action="store_true", help="print the whole manifest")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("cv", help="cross-validate one model configuration in this process")
    p.add_argument("--store", required=True)
    p.add_argument("--challenge", choices=("1", "2"), required=True)
    p.add_argument("--model", required=True, help="a registered model name")
    _add_split_args(p)
    p.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="e.g. lr=3e-4, model.dropout=0.2"
    )
    p.add_argument("--out", required=True, help="run folder for checkpoints and predictions")
    _add_data_mode_arg(p)
    p.add_argument("--smoke-test", action="store_true", help="2 epochs per fold")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_cv)

    p = sub.add_parser("spaces", help="list the named search spaces")
    p.add_argument("--show", metavar="NAME", help="describe one space's parameters")
    p.set_defaults(func=cmd_spaces)

    p = sub.add_parser("tune", help="search a space with Ray Tune + Optuna TPE + ASHA")
    p.add_argument("--store", required=True)
    p.add_argument("--challenge", choices=("1", "2"), required=True)
    p.add_argument("--space", required=True, help="a name from `eegtune spaces`")
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--max-epochs", type=int, default=30)
    p.add_argument("--name", required=True, help="experiment name (its folder)")
    p.add_argument("--storage-path", default="tune_runs", help="shared storage on a cluster")
    p.add_argument("--address", help="a Ray cluster: auto or HOST:PORT (default: local Ray)")
    p.add_argument("--num-cpus", type=int, help="CPUs for a local Ray (default: all)")
    p.add_argument(
        "--object-store-memory",
        type=int,
        metavar="BYTES",
        help="shared memory for a local Ray's object store (default: Ray's, 30%% of RAM)",
    )
    _add_data_mode_arg(p)
    p.add_argument("--workers-per-fold", type=int, default=1)
    p.add_argument("--cpus-per-worker", type=float)
    p.add_argument("--resume", action="store_true", help="continue an interrupted experiment")
    p.add_argument(
        "--max-failures",
        type=int,
        default=1,
        help="restarts of a trial, and of its lost workers, from its last checkpoint",
    )
    p.add_argument("--sampler", choices=("tpe", "random"), default="tpe")
    p.add_argument(
        "--scheduler", choices=("asha", "fifo"), default="asha", help="fifo: no early stopping"
    )
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="a training setting every trial shares and the space does not search, "
        "e.g. patience=10",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--top", type=int, default=5, help="rows of the results table to print")
    p.add_argument("--smoke-test", action="store_true", help="2 trials, 2 folds, 2 epochs")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("ensemble", help="combine the top trials' fold models into one predictor")
    p.add_argument("--experiment", action="append", required=True, help="a tune experiment folder")
    p.add_argument("--challenge", choices=("1", "2"), required=True)
    p.add_argument("--method", choices=METHODS, default="greedy")
    p.add_argument("--top-k", type=int, default=5, help="trials in `mean`; trials --seeds retrains")
    p.add_argument("--size", type=int, default=25, help="picks of `greedy`, with replacement")
    p.add_argument("--seeds", type=int, default=0, help="retrain the top-k with N new seeds (Ray)")
    p.add_argument("--address", help="with --seeds: a Ray cluster (default: a local Ray)")
    p.add_argument("--num-cpus", type=int, help="with --seeds: CPUs for a local Ray")
    p.add_argument("--out", required=True, help="the ensemble folder to write")
    p.set_defaults(func=cmd_ensemble)

    p = sub.add_parser("submission", help="export two ensembles as the challenge's zip")
    p.add_argument("--c1", required=True, help="the Challenge 1 ensemble folder")
    p.add_argument("--c2", required=True, help="the Challenge 2 ensemble folder")
    p.add_argument("--out", required=True, help="the zip to write")
    p.set_defaults(func=cmd_submission)

    p = sub.add_parser("score", help="score a submission zip as the challenge's scorer does")
    p.add_argument("--submission", required=True, help="the zip")
    p.add_argument("--bids", action="append", required=True, help="a release root (repeatable)")
    p.add_argument("--fast", action="store_true", help=f"batches of {256}, not the scorer's 1")
    p.add_argument("--predictions", help="per-window Parquet (default: beside the zip)")
    p.add_argument("--oracle", help="a synthetic data set's oracle.json, to print its floors")
    p.add_argument("--smoke-test", action="store_true", help="only the first 2 subjects")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("audit", help="show a store's folds and check they cannot leak")
    p.add_argument("store")
    p.add_argument("--challenge", choices=("1", "2"), default="1")
    _add_split_args(p)
    p.set_defaults(func=cmd_audit)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ValueError as exc:
        print(f"eegtune {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
