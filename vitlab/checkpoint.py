"""Checkpoints in vitlab's two formats, each carrying what rebuilds its model alone (the resolved config, class
names, normalisation): a torch file (``.pt``, with the training state when a run writes it) and a ``.safetensors``
file (weights plus JSON metadata; ``vitlab export`` writes it).

This module sits at the bottom with config, io and errors: it checks everything a checkpoint says about itself
(format, config, classes, mean/std, temperature), and leaves checking the weights against the model the config
describes to where a model is built (``vitlab.models.loading``), so it never imports the models.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_bytes
from torch import nn

from vitlab.config import Config, validate
from vitlab.errors import VitlabError
from vitlab.io import atomic_torch_save, atomic_write_bytes, safe_torch_load

FORMAT = "vitlab-checkpoint-v1"
SAFETENSORS_FORMAT = "vitlab-safetensors-v1"
METADATA_KEYS = ("config", "classes", "mean", "std")


def save_checkpoint(path: Path, model: nn.Module, cfg: Config, meta: dict[str, Any]) -> None:
    """A torch checkpoint, written atomically; ``meta`` carries classes, mean, std and any training state
    (optimizer, step, random streams ...)."""
    state = {"format": FORMAT, "config": cfg.to_dict(), "model": model.state_dict(), **meta}
    atomic_torch_save(state, path)


def save_safetensors(path: Path, model: nn.Module, cfg: Config, meta: dict[str, Any]) -> None:
    """Weights as safetensors; config, class names, normalisation and temperature as JSON metadata, so the file
    alone rebuilds the model and loading it can never run code."""
    metadata = {
        "format": SAFETENSORS_FORMAT,
        "config": json.dumps(cfg.to_dict()),
        "classes": json.dumps(meta["classes"]),
        "mean": json.dumps(list(meta["mean"])),
        "std": json.dumps(list(meta["std"])),
        "temperature": json.dumps(float(meta.get("temperature", 1.0))),
    }
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(safetensors_bytes(tensors, metadata=metadata), Path(path))


def read_checkpoint_file(path: Path) -> dict[str, Any]:
    """The raw checkpoint dict (a torch file or a vitlab .safetensors), its config and metadata checked before
    anything is built from it (``check_checkpoint``); ``vitlab.models.loading.read_checkpoint`` also checks the
    weights."""
    path = Path(path)
    if path.suffix == ".safetensors" and path.is_file():
        ckpt = read_safetensors(path)
    else:
        ckpt = safe_torch_load(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise VitlabError(f"{path}: not a vitlab checkpoint (expected a file written by 'vitlab train')")
    check_checkpoint(ckpt, path)
    return ckpt


def read_safetensors(path: Path) -> dict[str, Any]:
    """The same dict as a torch checkpoint (format, config, classes, mean, std, model) from a vitlab .safetensors."""
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise VitlabError(f"{path}: not a readable safetensors file ({e})") from None
    if metadata.get("format") != SAFETENSORS_FORMAT:
        raise VitlabError(
            f"{path}: a safetensors file without vitlab's metadata (expected one written by 'vitlab export')"
        )
    ckpt: dict[str, Any] = {"format": FORMAT, "model": tensors}
    for key in METADATA_KEYS:
        if key not in metadata:
            raise VitlabError(f"{path}: the vitlab metadata has no {key!r} entry")
        try:
            ckpt[key] = json.loads(metadata[key])
        except json.JSONDecodeError as e:
            raise VitlabError(f"{path}: the metadata entry {key!r} is not valid JSON ({e.msg})") from None
    try:  # optional: written since vitlab calibrate
        ckpt["temperature"] = json.loads(metadata.get("temperature", "1.0"))
    except json.JSONDecodeError:
        raise VitlabError(f"{path}: the metadata entry 'temperature' is not valid JSON") from None
    return ckpt


def check_checkpoint(ckpt: dict[str, Any], path: Path) -> Config:
    """The checkpoint's config, after checking it and the metadata it implies (one line each)."""
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
    return cfg
