"""``vitlab explain``: class-specific explanations of any images (Grad-CAM, gradient-weighted rollout, rollout,
attention), one PNG per image."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "explain"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        NAME,
        help="class-specific explanations of any images (Grad-CAM, gradient-weighted "
        "rollout, rollout, attention), one PNG each",
    )
    p.add_argument("checkpoint")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files and/or folders")
    p.add_argument("--out", required=True, help="folder for one PNG per image")
    p.add_argument(
        "--method",
        choices=("grad-rollout", "gradcam", "rollout", "attention"),
        default="grad-rollout",
        help="default %(default)s (Chefer et al., 2021); rollout and attention do not depend on the class",
    )
    p.add_argument("--class", dest="class_name", metavar="NAME", help="explain this class (default: the predicted one)")
    p.add_argument(
        "--head-fusion",
        choices=("mean", "max", "min"),
        default="mean",
        help="how rollout and attention combine the heads (default %(default)s; the gradient methods "
        "weigh the heads by their gradients instead)",
    )
    p.add_argument(
        "--discard",
        type=float,
        default=0.0,
        help="rollout only: share of the lowest attention weights to drop in each layer (e.g. 0.9)",
    )
    p.add_argument("--device", default="auto")


def run(args: argparse.Namespace) -> int:
    from vitlab.analysis.attention_cli import explain_files
    from vitlab.data.images import display_path

    for path in explain_files(
        args.checkpoint,
        args.images,
        Path(args.out),
        method=args.method,
        class_name=args.class_name,
        fusion=args.head_fusion,
        discard=args.discard,
        device=args.device,
    ):
        print(display_path(path))
    return 0
