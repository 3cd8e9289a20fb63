"""``vitlab export``: a checkpoint's model in a portable file.

- safetensors: vitlab's own second checkpoint format (``vitlab.checkpoint``): weights plus config, classes and
  normalisation as metadata; vitlab reads it back as a checkpoint.
- onnx: the inference graph (images -> logits) with a dynamic batch size, via torch.export; runs in onnxruntime.
- torchscript: a traced graph for C++/LibTorch users (PyTorch deprecates TorchScript; prefer onnx).
- hf: a Hugging Face ``transformers`` ViT folder; timm: a timm ``vit_*`` state dict with its create_model
  arguments (models with the paper's block layout; ``vitlab.interop``).

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

from safetensors.torch import save as safetensors_bytes

from vitlab.config import image_hw, size_label
from vitlab.errors import VitlabError
from vitlab.io import atomic_write_bytes, atomic_write_text
from vitlab.checkpoint import save_safetensors
from vitlab.models.loading import load_checkpoint


def export_safetensors(checkpoint: str | Path, out: str | Path) -> Path:
    """The checkpoint in vitlab's safetensors format (``vitlab.checkpoint.save_safetensors``), which
    ``vitlab.load_checkpoint`` reads back and whose loading can never run code."""
    model, meta = load_checkpoint(checkpoint)
    out = Path(out)
    save_safetensors(out, model, meta["config"], meta)
    return out


def _side_info(meta: dict[str, Any]) -> dict[str, str]:
    cfg = meta["config"]
    return {
        "vitlab_format": "vitlab-export-v1",
        "classes": json.dumps(meta["classes"]),
        "mean": json.dumps(meta["mean"]),
        "std": json.dumps(meta["std"]),
        "img_size": size_label(cfg.model.img_size),
        "config": json.dumps(cfg.to_dict()),
    }


def export_onnx(checkpoint: str | Path, out: str | Path) -> Path:
    """``images`` (B, C, H, W) float, normalised -> ``logits`` (B, classes); B is dynamic."""
    try:
        import onnx

        importlib.import_module("onnxscript")  # torch.onnx's exporter needs it
    except ImportError:
        raise VitlabError(
            "needs onnx and onnxscript (pip install 'vitlab[export]')", field="fmt", value="onnx"
        ) from None
    model, meta = load_checkpoint(checkpoint)
    example = torch.randn(2, meta["config"].model.in_chans, *image_hw(meta["config"].model.img_size))
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the exporter narrates each stage
            torch.onnx.export(
                model,
                (example,),
                str(tmp),
                input_names=["images"],
                output_names=["logits"],
                dynamo=True,
                dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1, max=65536)}},
                external_data=False,
            )
        proto = onnx.load(str(tmp))
        for key, value in _side_info(meta).items():
            proto.metadata_props.add(key=key, value=value)
        atomic_write_bytes(proto.SerializeToString(), out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def export_torchscript(checkpoint: str | Path, out: str | Path) -> Path:
    model, meta = load_checkpoint(checkpoint)
    example = torch.randn(2, meta["config"].model.in_chans, *image_hw(meta["config"].model.img_size))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (DeprecationWarning, FutureWarning, UserWarning))
        traced = torch.jit.trace(model, example)
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer, _extra_files={"vitlab.json": json.dumps(_side_info(meta))})
    out = Path(out)
    atomic_write_bytes(buffer.getvalue(), out)
    return out


def _model_card(checkpoint: Path, meta: dict[str, Any]) -> str:
    """README.md for a Hugging Face folder: data, recipe and the measured accuracy of the checkpoint's run."""
    cfg = meta["config"]
    summary_file = checkpoint.parent / "summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
    if summary:  # the exported model alone, without the run's test-time augmentation
        acc = summary.get("test_acc_no_tta", summary["test_acc"])
        result = (
            f"Test accuracy **{acc:.2%}** on {summary['test_n']} images "
            f"(best validation {summary['val_acc']:.2%}), measured by `vitlab train` after "
            f"{summary['train_seconds']:.0f} s of training ({summary['epochs']:.1f} epochs) on {summary['device']}."
            if summary.get("val_acc") is not None
            else f"Test accuracy **{acc:.2%}**."
        )
    else:
        result = "No measured accuracy: the checkpoint's run folder has no summary.json."
    t = cfg.train
    return (
        f"---\nlibrary_name: transformers\ntags:\n- image-classification\n- vit\n- vitlab\n---\n\n"
        f"# ViT (dim {cfg.model.dim}, depth {cfg.model.depth}, patch {cfg.model.patch_size}) trained with vitlab\n\n"
        f"- Data: `{cfg.data.source}`, {len(meta['classes'])} classes: {', '.join(meta['classes'])}\n"
        f"- Images: {size_label(cfg.model.img_size)} px, normalised with mean {meta['mean']} and std {meta['std']} "
        f"(see preprocessor_config.json)\n"
        f"- Recipe: {t.optimizer}, lr {t.lr:g}, weight decay {t.weight_decay:g}, batch {t.batch_size}, "
        f"{t.schedule} schedule, label smoothing {t.label_smoothing:g}, seed {t.seed}\n"
        f"- Result: {result}\n\n"
        "```python\nfrom transformers import ViTForImageClassification\n"
        'model = ViTForImageClassification.from_pretrained("THIS_FOLDER")\n```\n'
    )


def export_hf(checkpoint: str | Path, out: str | Path) -> Path:
    """A folder ``transformers.ViTForImageClassification.from_pretrained`` loads with the same logits: config.json
    (with id2label), model.safetensors, preprocessor_config.json and a model card (README.md)."""
    from vitlab.interop import to_hf

    model, meta = load_checkpoint(checkpoint)
    config, state = to_hf(meta["config"].model, model.state_dict(), meta["classes"])
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise VitlabError("the hf format writes a folder, and this is a file", field="out", value=out)
    out.mkdir(parents=True, exist_ok=True)
    height, width = image_hw(meta["config"].model.img_size)
    preprocessor = {
        "image_processor_type": "ViTImageProcessor",
        "do_resize": True,
        "size": {"height": height, "width": width},
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": meta["mean"],
        "image_std": meta["std"],
    }
    atomic_write_bytes(safetensors_bytes(state, metadata={"format": "pt"}), out / "model.safetensors")
    atomic_write_text(json.dumps(config, indent=2) + "\n", out / "config.json")
    atomic_write_text(json.dumps(preprocessor, indent=2) + "\n", out / "preprocessor_config.json")
    atomic_write_text(_model_card(Path(checkpoint), meta), out / "README.md")
    return out


def export_timm(checkpoint: str | Path, out: str | Path) -> Path:
    """A timm ``vit_*`` state dict as safetensors; its metadata ``timm_kwargs`` holds the ``timm.create_model``
    arguments and ``norm_eps`` the LayerNorm epsilon (``vitlab.interop.timm_model`` does both)."""
    from vitlab.interop import to_timm, to_timm_state

    model, meta = load_checkpoint(checkpoint)
    cfg = meta["config"].model
    kwargs = to_timm(cfg)
    metadata = {
        "format": "pt",
        "timm_kwargs": json.dumps(kwargs),
        "norm_eps": repr(cfg.norm_eps),
        "classes": json.dumps(meta["classes"]),
        "mean": json.dumps(meta["mean"]),
        "std": json.dumps(meta["std"]),
    }
    out = Path(out)
    atomic_write_bytes(safetensors_bytes(to_timm_state(cfg, model.state_dict()), metadata=metadata), out)
    return out


EXPORTERS = {
    "safetensors": export_safetensors,
    "onnx": export_onnx,
    "torchscript": export_torchscript,
    "hf": export_hf,
    "timm": export_timm,
}


def export(checkpoint: str | Path, fmt: str, out: str | Path) -> Path:
    if fmt not in EXPORTERS:
        raise VitlabError(f"supported formats: {', '.join(EXPORTERS)}", field="fmt", value=fmt)
    return EXPORTERS[fmt](checkpoint, out)
