"""``eegtune report``: one HTML page about finished searches, their ensembles and scores."""

from __future__ import annotations

import argparse


def cmd_report(args: argparse.Namespace) -> int:
    from eegtune.reports import ReportRequest, build_report

    req = ReportRequest(
        experiments=tuple(args.experiment),
        out=args.out,
        ensembles=tuple(args.ensemble or ()),
        scores=args.scores,
        top=args.top,
    )
    out, figures = build_report(req)
    drawn = sum(f.png is not None for f in figures)
    print(f"wrote {out.resolve()} ({out.stat().st_size / 2**20:.1f} MiB): {drawn} figures")
    for fig in figures:
        if fig.png is None:
            print(f"  {fig.title}: {fig.note}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="one self-contained HTML page about finished searches")
    p.add_argument(
        "--experiment", action="append", required=True, help="a tune experiment: folder or URI"
    )
    p.add_argument("--ensemble", action="append", help="an ensemble folder or URI (repeatable)")
    p.add_argument("--scores", help="the per-window predictions Parquet of `eegtune score`")
    p.add_argument("--top", type=int, default=10, help="leaderboard rows per experiment")
    p.add_argument("--out", required=True, help="the HTML file to write")
    p.set_defaults(func=cmd_report)
