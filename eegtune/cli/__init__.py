"""The ``eegtune`` command line: parses arguments and calls library functions.

One module per stage: :mod:`~eegtune.cli.data_commands` (synth, prepare, info, audit),
:mod:`~eegtune.cli.search_commands` (cv, spaces, tune) and
:mod:`~eegtune.cli.ensemble_commands` (ensemble, submission, score) and
:mod:`~eegtune.cli.report_commands` (report).
"""

from __future__ import annotations

import argparse
import sys

from eegtune import __version__, storage
from eegtune.cli import data_commands, ensemble_commands, report_commands, search_commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eegtune",
        description="Hyperparameter search and ensembling for the EEG 2025 challenge.",
    )
    parser.add_argument("--version", action="version", version=f"eegtune {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for commands in (data_commands, search_commands, ensemble_commands, report_commands):
        commands.add_commands(sub)
    # Where --store, --storage-path, --experiment or --out may be an s3:// URI.
    for name in ("prepare", "info", "audit", "cv", "tune", "ensemble", "submission", "report"):
        sub.choices[name].add_argument(
            "--s3-endpoint",
            metavar="URL",
            help="an S3-compatible server for s3:// URIs (default: $AWS_ENDPOINT_URL)",
        )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    storage.set_endpoint(getattr(args, "s3_endpoint", None))
    try:
        return int(args.func(args))
    except ValueError as exc:
        print(f"eegtune {args.command}: error: {exc}", file=sys.stderr)
        return 2
