"""What several commands share, declared once: the run flags of ``train`` and ``finetune``, the ``--tta`` flag,
applying flags and ``--set`` to a config, and training a run then writing its report."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

from vitlab.config import TTA, Config, parse_set, set_value

if TYPE_CHECKING:
    from vitlab.models.pretrained import Pretrained


def add_tta_flag(p: argparse.ArgumentParser) -> None:
    """``--tta``, for the commands that run inference on a checkpoint."""
    p.add_argument(
        "--tta",
        choices=get_args(TTA),
        default=None,
        help="test-time augmentation: logits averaged over the image and its mirror (flip), also shifted "
        "one pixel each way (full: 6 views); default: the checkpoint's train.tta",
    )


def add_run_flags(p: argparse.ArgumentParser) -> None:
    """The flags ``train`` and ``finetune`` share, declared once."""
    p.add_argument("--data", help="cifar10, cifar100, or an ImageFolder root with train/ and test/ (default: cifar10)")
    p.add_argument("--epochs", type=int, help="number of epochs (default 10, or unlimited with --time-budget)")
    p.add_argument(
        "--time-budget",
        type=float,
        metavar="SECONDS",
        help="stop training after this many seconds; the learning-rate schedule is fitted to it",
    )
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config field, e.g. --set model.dim=256 --set train.label_smoothing=0.1",
    )
    p.add_argument(
        "--no-report", action="store_true", help="skip the HTML report at the end (vitlab report makes it later)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace a run already in --out (otherwise refused)")
    p.add_argument(
        "--tensorboard",
        action="store_true",
        help="also log the metrics to TensorBoard in RUN_DIR/tensorboard (pip install 'vitlab[tensorboard]')",
    )


def run_flag_values(args: argparse.Namespace) -> dict[str, object]:
    """The config fields that ``add_run_flags``' flags set (None where a flag was not given)."""
    return {
        "data.source": args.data,
        "train.epochs": args.epochs,
        "train.time_budget": args.time_budget,
        "train.batch_size": args.batch_size,
        "train.lr": args.lr,
        "train.seed": args.seed,
        "train.device": args.device,
        "train.tensorboard": True if args.tensorboard else None,
    }


def apply_overrides(cfg: Config, flags: dict[str, object], sets: list[str]) -> Config:
    """The flags that were given (not None), then every --set KEY=VALUE, onto ``cfg``."""
    for key, value in flags.items():
        if value is not None:
            set_value(cfg, key, value)
    for key, value in parse_set(sets):
        set_value(cfg, key, value)
    return cfg


def train_and_report(
    cfg: Config,
    run_dir: Path,
    *,
    resume: bool,
    report: bool,
    pretrained: Pretrained | None = None,
    overwrite: bool = False,
    checkpoint: dict[str, Any] | None = None,
) -> None:
    """Train the run in ``run_dir``, then write its HTML report when ``report`` is set. ``checkpoint``: the
    run's last checkpoint, already read, when resuming."""
    from vitlab.train.trainer import train

    summary = train(cfg, run_dir, resume=resume, pretrained=pretrained, overwrite=overwrite, checkpoint=checkpoint)
    if summary is not None and report:  # None: a torchrun rank other than 0
        from vitlab.analysis.report import build_report

        print(f"report: {build_report(run_dir, device=cfg.train.device)}")
