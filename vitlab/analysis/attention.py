"""What the class token looks at: last-layer attention and attention rollout (Abnar & Zuidema, 2020)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _pooled_row(a: torch.Tensor, prefix: int) -> torch.Tensor:
    """(B, T, T) -> (B, N): the class token's row over the patches, or with no class token (sequence or mean
    pooling, ``prefix`` 0) the average row, what every token together attends to."""
    return a[:, 0, 1:] if prefix else a.mean(1)


def last_layer_cls_attention(maps: list[torch.Tensor], prefix: int = 1) -> torch.Tensor:
    """Class-token attention to each patch in the last layer, averaged over heads: (B, N) from (B, h, T, T)."""
    return _pooled_row(maps[-1].mean(1), prefix)


def attention_rollout(maps: list[torch.Tensor], prefix: int = 1) -> torch.Tensor:
    """Rollout of the class token (or of all tokens, with ``prefix`` 0) over the patches: (B, N).

    Per layer: average the heads, add the identity (the residual path carries each token onward), renormalise
    the rows; then multiply the layers' matrices from the first to the last.
    """
    rollout = None
    for attn in maps:
        a = attn.mean(1)  # (B, T, T)
        a = a + torch.eye(a.shape[-1], device=a.device, dtype=a.dtype)
        a = a / a.sum(-1, keepdim=True)
        rollout = a if rollout is None else a @ rollout
    return _pooled_row(rollout, prefix)


def to_heatmap(weights: torch.Tensor, size: int) -> torch.Tensor:
    """(B, N) patch weights -> (B, size, size) in [0, 1], bilinearly upsampled over the image."""
    B, N = weights.shape
    grid = int(round(N**0.5))
    w = weights.reshape(B, 1, grid, grid).float()
    w = F.interpolate(w, size=(size, size), mode="bilinear", align_corners=False)[:, 0]
    lo = w.amin((1, 2), keepdim=True)
    hi = w.amax((1, 2), keepdim=True)
    return (w - lo) / (hi - lo).clamp_min(1e-12)


@torch.inference_mode()
def attention_overlays(model, images: torch.Tensor, transform) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Logits (B, K) of uint8 images (B, 3, S, S) and their heatmaps (B, S, S) on the CPU:
    ``{"last": last-layer class-token attention, "rollout": attention rollout}``."""
    device = next(model.parameters()).device
    logits, maps = model(transform(images.to(device)), return_attention=True)
    prefix, size = model.num_prefix_tokens, images.shape[-1]
    return logits.cpu(), {
        "last": to_heatmap(last_layer_cls_attention(maps, prefix).cpu(), size),
        "rollout": to_heatmap(attention_rollout(maps, prefix).cpu(), size),
    }
