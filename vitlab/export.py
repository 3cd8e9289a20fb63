"""``vitlab export``: a checkpoint's model in a portable file.

- safetensors: the weights, with config, classes and normalisation as metadata (vitlab reads it back as a checkpoint).
- onnx: the inference graph (images -> logits) with a dynamic batch size, via torch.export; runs in onnxruntime.
- torchscript: a traced graph for C++/LibTorch users (PyTorch deprecates TorchScript; prefer onnx).

Every file carries the class names and the normalisation a user needs to feed it: ONNX in its metadata_props,
TorchScript as an extra file ``vitlab.json``.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import warnings
from pathlib import Path
from typing import Any

import torch

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


def _side_info(meta: dict[str, Any]) -> dict[str, str]:
    cfg = meta["config"]
    return {"vitlab_format": "vitlab-export-v1", "classes": json.dumps(meta["classes"]), "mean": json.dumps(meta["mean"]),
            "std": json.dumps(meta["std"]), "img_size": str(cfg.model.img_size), "config": json.dumps(cfg.to_dict())}


def export_onnx(checkpoint: str | Path, out: str | Path) -> Path:
    """``images`` (B, C, S, S) float, normalised -> ``logits`` (B, classes); B is dynamic."""
    try:
        import onnx

        importlib.import_module("onnxscript")  # torch.onnx's exporter needs it
    except ImportError:
        raise VitlabError("--format onnx: needs onnx and onnxscript (pip install 'vitlab[export]')") from None
    model, meta = load_checkpoint(checkpoint)
    size = meta["config"].model.img_size
    example = torch.randn(2, meta["config"].model.in_chans, size, size)
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the exporter narrates each stage
            torch.onnx.export(model, (example,), str(tmp), input_names=["images"], output_names=["logits"],
                              dynamo=True, dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1, max=65536)}},
                              external_data=False)
        proto = onnx.load(str(tmp))
        for key, value in _side_info(meta).items():
            proto.metadata_props.add(key=key, value=value)
        atomic_write_bytes(proto.SerializeToString(), out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def export_torchscript(checkpoint: str | Path, out: str | Path) -> Path:
    model, meta = load_checkpoint(checkpoint)
    size = meta["config"].model.img_size
    example = torch.randn(2, meta["config"].model.in_chans, size, size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (DeprecationWarning, FutureWarning, UserWarning))
        traced = torch.jit.trace(model, example)
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer, _extra_files={"vitlab.json": json.dumps(_side_info(meta))})
    out = Path(out)
    atomic_write_bytes(buffer.getvalue(), out)
    return out


EXPORTERS = {"safetensors": export_safetensors, "onnx": export_onnx, "torchscript": export_torchscript}


def export(checkpoint: str | Path, fmt: str, out: str | Path) -> Path:
    if fmt not in EXPORTERS:
        raise VitlabError(f"--format {fmt}: supported formats: {', '.join(EXPORTERS)}")
    return EXPORTERS[fmt](checkpoint, out)

