"""``vitlab predict``: classify image files and folders with a checkpoint; a CSV with one probability column per
class."""

from __future__ import annotations

import argparse

from vitlab.commands.common import add_tta_flag

NAME = "predict"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(NAME, help="classify image files and folders; CSV with one probability column per class")
    p.add_argument("checkpoint")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files and/or folders (searched recursively)")
    p.add_argument("--out", help="CSV file to write (default: print the CSV)")
    p.add_argument("--top-k", type=int, default=1, help="also list the next K-1 most likely labels")
    add_tta_flag(p)
    p.add_argument("--batch-size", type=int, default=0, help="images per inference pass (default: automatic)")
    p.add_argument("--device", default="auto")


def run(args: argparse.Namespace) -> int:
    from vitlab.predict import predict

    predict(
        args.checkpoint,
        args.paths,
        out=args.out,
        top_k=args.top_k,
        batch_size=args.batch_size,
        device=args.device,
        tta=args.tta,
    )
    return 0
