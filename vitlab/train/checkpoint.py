"""Checkpoints that rebuild their model alone: weights plus the resolved config, class names and normalisation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from vitlab.config import Config
from vitlab.errors import VitlabError
from vitlab.io import atomic_torch_save, safe_torch_load
from vitlab.models.vit import VisionTransformer

FORMAT = "vitlab-checkpoint-v1"


def save_checkpoint(path: Path, model: VisionTransformer, cfg: Config, meta: dict[str, Any]) -> None:
    """``meta`` carries classes, mean, std and any training state (optimizer, step, RNG ...)."""
    state = {"format": FORMAT, "config": cfg.to_dict(), "model": model.state_dict(), **meta}
    atomic_torch_save(state, path)


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The raw checkpoint dict, checked to be a vitlab checkpoint (a torch file or an exported .safetensors)."""
    path = Path(path)
    if path.suffix == ".safetensors" and path.is_file():
        from vitlab.export import read_safetensors

        return read_safetensors(path)
    ckpt = safe_torch_load(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise VitlabError(f"{path}: not a vitlab checkpoint (expected a file written by 'vitlab train')")
    return ckpt


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[VisionTransformer, dict[str, Any]]:
    """The model in eval mode on ``device`` and the checkpoint's metadata (config, classes, mean, std ...)."""
    path = Path(path)
    ckpt = read_checkpoint(path)
    cfg = Config.from_dict(ckpt["config"], origin=f"{path} config")
    model = VisionTransformer(cfg.model)
    try:
        model.load_state_dict(ckpt.pop("model"))
    except RuntimeError as e:
        first = str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else str(e)
        raise VitlabError(f"{path}: weights do not match the model its config describes ({first})") from None
    meta = {k: v for k, v in ckpt.items() if k not in ("optimizer", "rng")}
    meta["config"] = cfg
    return model.to(device).eval(), meta
