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
from eegtune.cli.arguments import show_defaults
from eegtune.cli.output import configure_logging
from eegtune.errors import EegtuneError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eegtune",
        description="Hyperparameter search and ensembling for the EEG 2025 challenge.",
    )
    parser.add_argument("--version", action="version", version=f"eegtune {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for commands in (data_commands, search_commands, ensemble_commands, report_commands):
        commands.add_commands(sub)
    for name, command in sub.choices.items():
        # On every command, after its name: `eegtune tune -v …`, `eegtune cv --quiet …`.
        command.add_argument(
            "-q", "--quiet", action="store_true", help="warnings and errors only; no progress"
        )
        command.add_argument("-v", "--verbose", action="count", default=0, help="debug lines")
        show_defaults(command)
        # Where --store, --storage-path, --experiment or --out may be an s3:// URI.
        if name in ("prepare", "info", "audit", "cv", "tune", "ensemble", "submission", "report"):
            command.add_argument(
                "--s3-endpoint",
                metavar="URL",
                help="an S3-compatible server for s3:// URIs (default: $AWS_ENDPOINT_URL)",
            )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose, args.quiet)
    storage.set_endpoint(getattr(args, "s3_endpoint", None))
    try:
        return int(args.func(args))
    except EegtuneError as exc:
        # A request eegtune refuses: the message is for a person. Anything else is a bug
        # and keeps its traceback.
        print(f"eegtune {args.command}: error: {exc}", file=sys.stderr)
        return 2
