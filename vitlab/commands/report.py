"""``vitlab report``: a run's HTML report (curves, confusion matrix, t-SNE, attention maps) in
RUN_DIR/report/report.html."""

from __future__ import annotations

import argparse

from vitlab.commands.common import add_tta_flag
from vitlab.errors import VitlabError

NAME = "report"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(NAME, help="curves, confusion matrix, t-SNE, attention maps: RUN_DIR/report/report.html")
    p.add_argument("run_dir")
    p.add_argument("--data", help="data source (default: the one the run was trained on)")
    p.add_argument(
        "--extra-test",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="another test set: an ImageFolder split of photos of any size (repeatable)",
    )
    p.add_argument("--tsne-samples", type=int, default=2000, help="test images in the t-SNE (default %(default)s)")
    add_tta_flag(p)
    p.add_argument("--device", default="auto")


def run(args: argparse.Namespace) -> int:
    from vitlab.analysis.report import build_report

    if args.tsne_samples < 10:
        raise VitlabError(f"--tsne-samples: expected at least 10, got {args.tsne_samples}")
    path = build_report(
        args.run_dir,
        data=args.data,
        extra_tests=args.extra_test,
        tsne_samples=args.tsne_samples,
        device=args.device,
        tta=args.tta,
    )
    print(f"report: {path}")
    return 0
