"""What the class token looks at: last-layer attention and attention rollout (Abnar & Zuidema, 2020)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def last_layer_cls_attention(maps: list[torch.Tensor]) -> torch.Tensor:
    """Class-token attention to each patch in the last layer, averaged over heads: (B, N) from (B, h, 1+N, 1+N)."""
    return maps[-1].mean(1)[:, 0, 1:]


def attention_rollout(maps: list[torch.Tensor]) -> torch.Tensor:
    """Rollout of the class token over the patches: (B, N).

    Per layer: average the heads, add the identity (the residual path carries each token onward), renormalise
    the rows; then multiply the layers' matrices from the first to the last.
    """
    rollout = None
    for attn in maps:
        a = attn.mean(1)  # (B, T, T)
        a = a + torch.eye(a.shape[-1], device=a.device, dtype=a.dtype)
        a = a / a.sum(-1, keepdim=True)
        rollout = a if rollout is None else a @ rollout
    return rollout[:, 0, 1:]


def to_heatmap(weights: torch.Tensor, size: int) -> torch.Tensor:
    """(B, N) patch weights -> (B, size, size) in [0, 1], bilinearly upsampled over the image."""
    B, N = weights.shape
    grid = int(round(N**0.5))
    w = weights.reshape(B, 1, grid, grid).float()
    w = F.interpolate(w, size=(size, size), mode="bilinear", align_corners=False)[:, 0]
    lo = w.amin((1, 2), keepdim=True)
    hi = w.amax((1, 2), keepdim=True)
    return (w - lo) / (hi - lo).clamp_min(1e-12)
