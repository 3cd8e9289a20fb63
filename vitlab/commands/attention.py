"""``vitlab attention``: attention maps (last layer and rollout) of any images, one PNG per image."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "attention"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(NAME, help="attention maps (last layer and rollout) of any images")
    p.add_argument("checkpoint")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files and/or folders")
    p.add_argument("--out", required=True, help="folder for one PNG per image")
    p.add_argument("--device", default="auto")


def run(args: argparse.Namespace) -> int:
    from vitlab.analysis.attention_cli import attention_maps
    from vitlab.data.images import display_path

    for path in attention_maps(args.checkpoint, args.images, Path(args.out), device=args.device):
        print(display_path(path))
    return 0
