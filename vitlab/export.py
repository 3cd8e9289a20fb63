"""``vitlab export``: a checkpoint's weights in a portable file (safetensors, with the config as metadata)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_bytes

from vitlab.errors import VitlabError
from vitlab.io import atomic_write_bytes
from vitlab.train.checkpoint import FORMAT, load_checkpoint

SAFETENSORS_FORMAT = "vitlab-safetensors-v1"
METADATA_KEYS = ("config", "classes", "mean", "std")


def export_safetensors(checkpoint: str | Path, out: str | Path) -> Path:
    """Weights as safetensors; config, class names and normalisation as JSON metadata, so the file alone
    rebuilds the model (``vitlab.load_checkpoint`` reads it) and loading it can never run code."""
    model, meta = load_checkpoint(checkpoint)
    metadata = {"format": SAFETENSORS_FORMAT, "config": json.dumps(meta["config"].to_dict()),
                "classes": json.dumps(meta["classes"]), "mean": json.dumps(meta["mean"]), "std": json.dumps(meta["std"])}
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    out = Path(out)
    atomic_write_bytes(safetensors_bytes(tensors, metadata=metadata), out)
    return out


def read_safetensors(path: Path) -> dict[str, Any]:
    """The same dict as a torch checkpoint (format, config, classes, mean, std, model) from an exported file."""
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise VitlabError(f"{path}: not a readable safetensors file ({e})") from None
    if metadata.get("format") != SAFETENSORS_FORMAT:
        raise VitlabError(f"{path}: a safetensors file without vitlab's metadata (expected one written by 'vitlab export')")
    ckpt: dict[str, Any] = {k: json.loads(metadata[k]) for k in METADATA_KEYS}
    ckpt.update(format=FORMAT, model=tensors)
    return ckpt


def export(checkpoint: str | Path, fmt: str, out: str | Path) -> Path:
    if fmt == "safetensors":
        return export_safetensors(checkpoint, out)
    raise VitlabError(f"--format {fmt}: supported formats: safetensors")

