"""``vitlab train``: train a model from a preset, a YAML config and flags, or continue a run with --resume."""

from __future__ import annotations

import argparse
from pathlib import Path

from vitlab.commands.common import add_run_flags, apply_overrides, run_flag_values, train_and_report
from vitlab.config import Config, load_yaml, set_value
from vitlab.errors import VitlabError
from vitlab.models.presets import apply_config_file, available_presets, preset_config

NAME = "train"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(NAME, help="train a model; writes checkpoints, metrics and a summary to --out")
    add_run_flags(p)
    p.add_argument("--model", help=f"model preset: {', '.join(available_presets())} (default: seed)")
    p.add_argument("--config", help="YAML file with model/data/train sections (a preset from configs/)")
    p.add_argument("--out", help="run folder for checkpoints, metrics.jsonl and summary.json")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last.pt")
    p.add_argument("--balanced", action="store_true", help="class-balanced sampling (the seed's WeightedRandomSampler)")


def train_config(args: argparse.Namespace) -> Config:
    """Defaults -> --config YAML -> --model -> flags -> --set (later wins)."""
    cfg = Config()
    if args.config:
        apply_config_file(cfg, load_yaml(args.config), f"--config {args.config}")
    if args.model:
        cfg.model = preset_config(args.model)
    flags = {**run_flag_values(args), "data.balanced": True if args.balanced else None}
    return apply_overrides(cfg, flags, args.set)


def run(args: argparse.Namespace) -> int:
    from vitlab.train.checkpointer import Checkpointer

    checkpoint = None
    if args.resume:
        run_dir = Path(args.resume)
        checkpoint = Checkpointer(run_dir).resume()  # read once: train() continues from it
        cfg = Config.from_dict(checkpoint["config"], origin=f"{run_dir}/last.pt")
        for key, value in {"train.epochs": args.epochs, "train.time_budget": args.time_budget}.items():
            if value is not None:
                set_value(cfg, key, value)
        if args.data:
            set_value(cfg, "data.source", args.data)
    else:
        if not args.out:
            raise VitlabError("--out: a run folder is required (or --resume RUN_DIR to continue a run)")
        run_dir, cfg = Path(args.out), train_config(args)
    if args.resume and args.overwrite:
        raise VitlabError(
            "--overwrite: cannot be combined with --resume (one continues the run, the other replaces it)"
        )
    train_and_report(
        cfg,
        run_dir,
        resume=bool(args.resume),
        report=not args.no_report,
        overwrite=args.overwrite,
        checkpoint=checkpoint,
    )
    return 0
