"""``eegtune synth | prepare | info | audit``: making and inspecting a window store."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from eegtune.cli.arguments import C1_TASK, add_split_args, csv_list, task_list
from eegtune.cli.output import on_terminal, progress_bar
from eegtune.errors import MissingFileError

logger = logging.getLogger(__name__)


def cmd_synth(args: argparse.Namespace) -> int:
    from eegtune.data.synthetic import SynthOptions, synthesize

    n_subjects, tasks = args.subjects, task_list(args.tasks)
    if args.smoke_test:
        n_subjects, tasks = min(n_subjects or 2, 2), (C1_TASK,)
    opts = SynthOptions(
        out=Path(args.out),
        n_subjects=n_subjects,
        releases=csv_list(args.releases),
        sfreq=args.sfreq,
        fmt=args.format,
        tasks=tasks,
        skeleton=Path(args.skeleton) if args.skeleton else None,
        seed=args.seed,
    )
    oracle = synthesize(opts, progress=not args.quiet and on_terminal())
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
        self.total = 0

    def start(self, total_recordings: int) -> None:
        self.total = total_recordings
        self.bar = progress_bar(
            not self.enabled, total=total_recordings, desc="prepare", unit="rec"
        )

    def update(self, record: dict) -> None:
        self.windows += sum(o["rows"] for o in record["outputs"].values())
        self.skipped += len({s["file"] for s in record["skipped"]})
        self.bar.set_postfix(windows=self.windows, skipped=self.skipped, refresh=False)
        self.bar.update(record["n_recordings"])
        if self.bar.disable and self.enabled:  # off a terminal: one line per subject
            logger.info(
                f"prepare: {self.bar.n}/{self.total} recordings, {self.windows} windows, "
                f"{self.skipped} skipped"
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def cmd_prepare(args: argparse.Namespace) -> int:
    from eegtune.data.info import describe_store
    from eegtune.data.prepare import PrepareOptions, prepare

    challenges = (1, 2) if args.challenge == "both" else (int(args.challenge),)
    options = PrepareOptions(
        challenges=challenges,
        c2_tasks=task_list(args.c2_tasks),
        dtype=args.dtype,
        strict=args.strict,
        workers=args.workers,
    )
    roots = [Path(b) for b in args.bids]
    progress = _PrepareProgress(enabled=not args.quiet)
    smoke = 2 if args.smoke_test else None
    try:
        if args.address:
            from eegtune.distributed.prepare_on_ray import prepare_on_ray

            summary = prepare_on_ray(roots, args.out, options, args.address, progress, smoke)
        else:
            summary = prepare(roots, args.out, options, progress=progress, max_subjects=smoke)
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
    print(describe_store(args.out))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from eegtune.data.info import describe_store, verify_store
    from eegtune.data.store import load_manifest

    store = args.store
    if args.json:
        manifest = load_manifest(store)
        if manifest is None:
            raise MissingFileError(f"{store}: no manifest.json")
        print(json.dumps(manifest, indent=1))
        return 0
    print(describe_store(store, verify=args.verify))
    if args.verify:
        return 1 if verify_store(store, load_manifest(store) or {"files": []}) else 0
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from eegtune.training.audit import audit_store

    split = "release" if args.by_release else "kfold"
    text, problems = audit_store(args.store, int(args.challenge), split, args.folds, args.seed)
    print(text)
    return 1 if problems else 0


def add_commands(sub: argparse._SubParsersAction) -> None:
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
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("prepare", help="cut BIDS releases into the Parquet window store")
    p.add_argument("--bids", action="append", required=True, help="a release root (repeatable)")
    p.add_argument("--out", required=True, help="the window store: a folder or a URI (s3://…)")
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
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("info", help="summarise a window store")
    p.add_argument("store")
    p.add_argument("--verify", action="store_true", help="recheck every file's checksum")
    p.add_argument("--json", action="store_true", help="print the whole manifest")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("audit", help="show a store's folds and check they cannot leak")
    p.add_argument("store")
    p.add_argument("--challenge", choices=("1", "2"), default="1")
    add_split_args(p)
    p.set_defaults(func=cmd_audit)
