"""``vitlab compare``: several runs in one HTML page: results, overlaid curves, configs side by side."""

from __future__ import annotations

import argparse

NAME = "compare"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(NAME, help="several runs in one HTML page: results, overlaid curves, configs side by side")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--out", required=True, help="HTML file to write")


def run(args: argparse.Namespace) -> int:
    from vitlab.analysis.compare import compare_runs

    print(f"compare: {compare_runs(args.run_dirs, args.out)}")
    return 0
