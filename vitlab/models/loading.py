"""A model rebuilt from a checkpoint: its weights checked against the model its config describes, then loaded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from vitlab.checkpoint import read_checkpoint_file
from vitlab.config import Config
from vitlab.models.vit import VisionTransformer, check_weights


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint's raw dict (``.pt`` or vitlab ``.safetensors``), checked before anything is built from it: its
    config passes the training config's rules, its metadata is well formed, and every weight has the name and
    shape that config's model has (compared on the meta device, before anything is allocated)."""
    path = Path(path)
    ckpt = read_checkpoint_file(path)
    check_weights(ckpt.get("model"), Config.from_dict(ckpt["config"], origin=f"{path} config").model, str(path))
    return ckpt


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[VisionTransformer, dict[str, Any]]:
    """The model in eval mode on ``device`` and the checkpoint's metadata (config, classes, mean, std ...)."""
    path = Path(path)
    ckpt = read_checkpoint(path)
    cfg = Config.from_dict(ckpt["config"], origin=f"{path} config")
    model = VisionTransformer(cfg.model)
    model.load_state_dict(ckpt.pop("model"))
    meta = {k: v for k, v in ckpt.items() if k not in ("optimizer", "rng")}
    meta["config"] = cfg
    return model.to(device).eval(), meta
