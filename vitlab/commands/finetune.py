"""``vitlab finetune``: fine-tune pretrained ViT weights (timm, Hugging Face, original .npz) with the ViT paper's
recipe, or train a new head alone on them (a linear probe)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from vitlab.commands.common import add_run_flags, apply_overrides, run_flag_values, train_and_report
from vitlab.config import Config, set_value, size_label
from vitlab.errors import VitlabError
from vitlab.models.presets import preset_config

if TYPE_CHECKING:
    from vitlab.models.pretrained import Pretrained

NAME = "finetune"

# The ViT paper's fine-tuning recipe (Dosovitskiy et al., 2021, appendix B.1.1): SGD with momentum 0.9, no weight
# decay, gradient clipping at norm 1, warm-up then cosine decay; lr 0.01 is the middle of its sweep.
FINETUNE_RECIPE = {
    "train.optimizer": "sgd",
    "train.momentum": 0.9,
    "train.weight_decay": 0.0,
    "train.grad_clip": 1.0,
    "train.schedule": "cosine",
    "train.warmup": 0.05,
    "train.lr": 0.01,
    "train.label_smoothing": 0.0,
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(NAME, help="fine-tune pretrained ViT weights (timm, Hugging Face, original .npz)")
    add_run_flags(p)
    p.add_argument(
        "--weights",
        required=True,
        metavar="SOURCE",
        help="timm:MODEL_NAME, a timm .safetensors/.pth/.bin state dict, a Hugging Face ViT directory "
        "(config.json + model.safetensors), or an original vision_transformer .npz",
    )
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument(
        "--model",
        help="the weights' paper size, e.g. vit-b/16: checked against them, and gives the head "
        "count that a timm state dict does not record",
    )
    p.add_argument(
        "--img-size",
        metavar="SIZE",
        help="train at this resolution, a side or HEIGHTxWIDTH (e.g. 224 or "
        "224x320; default: the weights' own); the position embedding "
        "is resampled to the new grid",
    )
    p.add_argument("--freeze-backbone", action="store_true", help="train the new head alone (a linear probe)")


def finetune_config(args: argparse.Namespace) -> tuple[Config, Pretrained]:
    """(config, the loaded weights, read once). Config: the weights' architecture -> the fine-tuning recipe ->
    flags -> --set (later wins)."""
    from vitlab.models.pretrained import load_pretrained

    heads = preset_config(args.model).heads if args.model else None
    pre = load_pretrained(args.weights, heads=heads)
    cfg = Config()
    cfg.model = dataclasses.replace(pre.config, preset=args.model or pre.config.preset)
    if args.model:
        expected = preset_config(args.model)
        for name in ("dim", "depth", "mlp_dim"):
            if getattr(expected, name) != getattr(pre.config, name):
                raise VitlabError(
                    f"--model {args.model}: {name} {getattr(expected, name)}, but the weights "
                    f"{args.weights} have {name} {getattr(pre.config, name)}"
                )
    for key, value in FINETUNE_RECIPE.items():
        set_value(cfg, key, value)
    cfg.data.mean, cfg.data.std = list(pre.mean), list(pre.std)
    flags = {
        **run_flag_values(args),
        "model.img_size": args.img_size,
        "train.init_weights": args.weights,
        "train.freeze_backbone": True if args.freeze_backbone else None,
    }
    return apply_overrides(cfg, flags, args.set), pre


def run(args: argparse.Namespace) -> int:
    cfg, pre = finetune_config(args)
    print(
        f"weights: {args.weights}: ViT dim {cfg.model.dim}, depth {cfg.model.depth}, heads {cfg.model.heads}, "
        f"patch {cfg.model.patch_size}, training at {size_label(cfg.model.img_size)} px"
        f"{', backbone frozen (linear probe)' if cfg.train.freeze_backbone else ''}"
    )
    train_and_report(
        cfg, Path(args.out), resume=False, report=not args.no_report, pretrained=pre, overwrite=args.overwrite
    )
    return 0
