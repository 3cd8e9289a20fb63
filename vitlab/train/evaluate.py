"""Inference over a uint8 split in batches: logits (optionally averaged over test-time views), loss and accuracy."""

from __future__ import annotations

from typing import get_args

import torch
import torch.nn.functional as F
from torch import nn

from vitlab.config import TTA
from vitlab.data.augment import BatchTransform
from vitlab.data.dataset import Split
from vitlab.train.step import MEMORY_FORMATS

# Test-time augmentation: "none"; "flip": the image and its mirror; "full": both, each also shifted one pixel
# up-left and down-right (6 views; airbench's multi-crop), a cheap ensemble of the views the model trained on.
TTA_MODES = get_args(TTA)


def tta_views(x: torch.Tensor, mode: str) -> list[torch.Tensor]:
    """The views of a normalised batch (B, C, H, W) that ``mode`` averages over."""
    views = [x]
    if mode == "full":
        padded = F.pad(x, (1, 1, 1, 1), mode="reflect")  # (B, C, H+2, W+2)
        views += [padded[..., :-2, :-2], padded[..., 2:, 2:]]  # content moved down-right, up-left
    if mode in ("flip", "full"):
        views += [v.flip(3) for v in views]
    return views


def tta_logits(model: nn.Module, x: torch.Tensor, mode: str = "none") -> torch.Tensor:
    """Logits of ``x`` averaged over the views of ``mode`` (``model(x)`` itself for "none")."""
    views = tta_views(x, mode)
    logits = model(views[0]).float()
    for view in views[1:]:
        logits += model(view).float()
    return logits / len(views)


@torch.inference_mode()
def predict_logits(
    model: nn.Module,
    images: torch.Tensor,
    transform: BatchTransform,
    batch_size: int,
    device: torch.device,
    tta: str = "none",
    memory_format: str = "contiguous",
) -> torch.Tensor:
    """Logits (N, classes) on the CPU for uint8 images (N, 3, H, W); ``memory_format`` lays out each normalised
    batch for the model ("contiguous" or "channels_last": same maths; "auto", unresolved, is contiguous)."""
    model.eval()
    layout = MEMORY_FORMATS.get(memory_format, torch.contiguous_format)
    out = [
        tta_logits(model, transform(chunk.to(device, non_blocking=True)).contiguous(memory_format=layout), tta).cpu()
        for chunk in images.split(batch_size)
    ]
    return torch.cat(out) if out else torch.empty(0)


def evaluate(
    model: nn.Module,
    split: Split,
    transform: BatchTransform,
    batch_size: int,
    device: torch.device,
    tta: str = "none",
    memory_format: str = "contiguous",
) -> dict[str, float]:
    """``{"accuracy", "loss", "n"}``: accuracy in [0, 1], mean cross-entropy."""
    logits = predict_logits(model, split.images, transform, batch_size, device, tta, memory_format)
    return logit_scores(logits, split.labels)


def logit_scores(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """``{"accuracy", "loss", "n"}`` of logits (N, K) against labels (N,)."""
    return {
        "accuracy": int((logits.argmax(1) == labels).sum()) / max(len(labels), 1),
        "loss": F.cross_entropy(logits, labels).item(),
        "n": len(labels),
    }
