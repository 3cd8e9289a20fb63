"""``vitlab serve``: a local web page and JSON API that classify uploaded images with a checkpoint
(pip install 'vitlab[serve]')."""

from __future__ import annotations

import argparse

from vitlab.commands.common import add_tta_flag
from vitlab.errors import VitlabError

NAME = "serve"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(NAME, help="a local web page and JSON API on a checkpoint (pip install 'vitlab[serve]')")
    p.add_argument("checkpoint")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    add_tta_flag(p)
    p.add_argument("--max-mb", type=float, default=10.0, help="largest upload accepted, in MB (default %(default)s)")
    p.add_argument("--device", default="auto")


def run(args: argparse.Namespace) -> int:
    from vitlab.serve import serve

    if not 0 < args.port < 65536:
        raise VitlabError(f"--port: expected 1 to 65535, got {args.port}")
    if not args.max_mb > 0:
        raise VitlabError(f"--max-mb: expected a positive size, got {args.max_mb}")
    serve(args.checkpoint, host=args.host, port=args.port, device=args.device, tta=args.tta, max_upload_mb=args.max_mb)
    return 0
