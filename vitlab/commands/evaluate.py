"""``vitlab eval``: accuracy, loss, top-5, macro-F1, balanced accuracy and calibration error of a checkpoint on a
data split, printed and as one JSON line."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from vitlab.commands.common import add_tta_flag
from vitlab.config import Config
from vitlab.errors import VitlabError

NAME = "eval"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(NAME, help="accuracy and loss of a checkpoint on a data split")
    p.add_argument("checkpoint")
    p.add_argument("--data", help="data source (default: the one the checkpoint was trained on)")
    p.add_argument("--split", choices=("test", "val", "train"), default="test")
    add_tta_flag(p)
    p.add_argument("--batch-size", type=int, default=0, help="images per inference pass (default: automatic)")
    p.add_argument("--device", default="auto")


def run(args: argparse.Namespace) -> int:
    from vitlab.data.dataset import load_data
    from vitlab.inference import Classifier

    clf = Classifier.from_checkpoint(args.checkpoint, args.device, batch_size=args.batch_size, tta=args.tta)
    cfg: Config = clf.config
    data_cfg = dataclasses.replace(cfg.data, source=args.data or cfg.data.source)
    # The training seed reproduces the training run's validation hold-out.
    data = load_data(data_cfg, cfg.model.img_size, cfg.train.seed)
    if data.classes != clf.classes:
        raise VitlabError(
            f"{args.checkpoint}: trained on {len(clf.classes)} classes {clf.classes[:5]}..., "
            f"but --data {data_cfg.source} has {len(data.classes)} classes {data.classes[:5]}..."
        )
    split = getattr(data, args.split)
    if split is None:
        raise VitlabError(f"--split {args.split}: {data_cfg.source} has no validation split (data.val_fraction is 0)")
    result = clf.scores(split)
    views = f" ({clf.tta} test-time augmentation)" if clf.tta != "none" else ""
    print(f"{args.split}: accuracy {result['accuracy']:.2%}, loss {result['loss']:.4f} on {result['n']} images{views}")
    top5 = f"top-5 {result['top5']:.2%}, " if "top5" in result else ""
    print(
        f"{args.split}: {top5}macro-F1 {result['macro_f1']:.4f}, balanced accuracy {result['balanced_accuracy']:.2%}, "
        f"expected calibration error {result['ece']:.4f}"
    )
    if result["collapse"]:
        print(f"vitlab: warning: {result['collapse']}", file=sys.stderr)
    result.pop("calibration")
    print(json.dumps(result))
    return 0
