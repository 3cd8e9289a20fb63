"""Checkpoints that rebuild their model alone: weights plus the resolved config, class names and normalisation."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from vitlab.config import Config, validate
from vitlab.errors import VitlabError
from vitlab.io import atomic_torch_save, safe_torch_load
from vitlab.models.vit import VisionTransformer, check_weights

FORMAT = "vitlab-checkpoint-v1"


def save_checkpoint(path: Path, model: VisionTransformer, cfg: Config, meta: dict[str, Any]) -> None:
    """``meta`` carries classes, mean, std and any training state (optimizer, step, RNG ...)."""
    state = {"format": FORMAT, "config": cfg.to_dict(), "model": model.state_dict(), **meta}
    atomic_torch_save(state, path)


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The raw checkpoint dict (a torch file or an exported .safetensors), checked before anything is built from it:
    its config passes the same rules as a training config, and every tensor has the shape that config implies."""
    path = Path(path)
    if path.suffix == ".safetensors" and path.is_file():
        from vitlab.export import read_safetensors

        ckpt = read_safetensors(path)
    else:
        ckpt = safe_torch_load(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise VitlabError(f"{path}: not a vitlab checkpoint (expected a file written by 'vitlab train')")
    check_checkpoint(ckpt, path)
    return ckpt


def check_checkpoint(ckpt: dict[str, Any], path: Path) -> Config:
    """The checkpoint's config, after checking it and the metadata and weight shapes it implies (one line each)."""
    if not isinstance(ckpt.get("config"), dict):
        raise VitlabError(f"{path}: the checkpoint holds no config mapping")
    cfg = Config.from_dict(ckpt["config"], origin=f"{path} config")
    try:
        validate(cfg, check_files=False)
    except VitlabError as e:
        raise VitlabError(f"{path}: stored config: {e}") from None
    m = cfg.model
    classes = ckpt.get("classes")
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes) or len(classes) != m.num_classes:
        raise VitlabError(
            f"{path}: expected {m.num_classes} class names (model.num_classes), got "
            f"{len(classes) if isinstance(classes, list) else type(classes).__name__}"
        )
    for key in ("mean", "std"):
        v = ckpt.get(key)
        numbers = (
            isinstance(v, (list, tuple))
            and len(v) == m.in_chans
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v)
        )
        if not numbers or (key == "std" and min(v) <= 0):
            raise VitlabError(
                f"{path}: expected {key} as {m.in_chans} finite numbers (one per channel"
                f"{', positive' if key == 'std' else ''}), got {v!r:.80}"
            )
    t = ckpt.get("temperature", 1.0)
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0:
        raise VitlabError(f"{path}: expected a positive finite softmax temperature, got {t!r:.40}")
    check_weights(ckpt.get("model"), m, str(path))
    return cfg


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
