"""``vitlab calibrate``: fit a softmax temperature on the validation split and write it into a new checkpoint."""

from __future__ import annotations

import argparse

NAME = "calibrate"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(NAME, help="fit a softmax temperature on the validation split; write a new checkpoint")
    p.add_argument("checkpoint")
    p.add_argument("--out", required=True, help="the calibrated checkpoint to write (never the input)")
    p.add_argument("--data", help="data source with the validation split (default: the run's own)")
    p.add_argument("--device", default="auto")


def run(args: argparse.Namespace) -> int:
    from vitlab.analysis.calibrate import calibrate

    r = calibrate(args.checkpoint, args.out, data=args.data, device=args.device)
    print(
        f"calibrate: temperature {r['temperature']:.3f} fitted on {r['n']} validation images: expected calibration "
        f"error {r['ece_before']:.4f} -> {r['ece_after']:.4f}, loss {r['nll_before']:.4f} -> {r['nll_after']:.4f}; "
        f"wrote {args.out}"
    )
    return 0
