"""Inference over a uint8 split in batches: logits, loss and accuracy."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vitlab.data.augment import BatchTransform
from vitlab.data.dataset import Split


@torch.inference_mode()
def predict_logits(
    model: nn.Module, images: torch.Tensor, transform: BatchTransform, batch_size: int, device: torch.device
) -> torch.Tensor:
    """Logits (N, classes) on the CPU for uint8 images (N, 3, H, W)."""
    model.eval()
    out = [model(transform(chunk.to(device, non_blocking=True))).float().cpu() for chunk in images.split(batch_size)]
    return torch.cat(out) if out else torch.empty(0)


def evaluate(
    model: nn.Module, split: Split, transform: BatchTransform, batch_size: int, device: torch.device
) -> dict[str, float]:
    """``{"accuracy", "loss", "n"}``: accuracy in [0, 1], mean cross-entropy."""
    logits = predict_logits(model, split.images, transform, batch_size, device)
    return {
        "accuracy": int((logits.argmax(1) == split.labels).sum()) / max(len(split), 1),
        "loss": F.cross_entropy(logits, split.labels).item(),
        "n": len(split),
    }
