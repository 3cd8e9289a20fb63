"""What the class token looks at, from a model's attention maps: last-layer attention and attention rollout
(Abnar & Zuidema, 2020). Pure tensor maths, used by inference (overlays) and explanations."""

from __future__ import annotations

import torch
import torch.nn.functional as F


HEAD_FUSIONS = ("mean", "max", "min")


def pooled_row(a: torch.Tensor, prefix: int) -> torch.Tensor:
    """(B, T, T) -> (B, N): the class token's row over the patches, or with no class token (sequence or mean
    pooling, ``prefix`` 0) the average row, what every token together attends to."""
    return a[:, 0, 1:] if prefix else a.mean(1)


def fuse_heads(attn: torch.Tensor, fusion: str = "mean") -> torch.Tensor:
    """(B, heads, T, T) -> (B, T, T): the heads' mean, max or min."""
    if fusion not in HEAD_FUSIONS:
        raise ValueError(f"head fusion: expected one of {', '.join(HEAD_FUSIONS)}, got {fusion!r}")
    return attn.mean(1) if fusion == "mean" else attn.amax(1) if fusion == "max" else attn.amin(1)


def last_layer_cls_attention(maps: list[torch.Tensor], prefix: int = 1, fusion: str = "mean") -> torch.Tensor:
    """Class-token attention to each patch in the last layer, heads fused: (B, N) from (B, h, T, T)."""
    return pooled_row(fuse_heads(maps[-1], fusion), prefix)


def attention_rollout(
    maps: list[torch.Tensor], prefix: int = 1, fusion: str = "mean", discard: float = 0.0
) -> torch.Tensor:
    """Rollout of the class token (or of all tokens, with ``prefix`` 0) over the patches: (B, N).

    Per layer: fuse the heads, zero the lowest ``discard`` share of the weights (keeping the first token's
    attention to itself, as vit-explain does), add the identity (the residual path carries each token onward),
    renormalise the rows; then multiply the layers' matrices from the first to the last.
    """
    rollout = None
    for attn in maps:
        a = fuse_heads(attn, fusion)  # (B, T, T)
        k = int(a[0].numel() * discard)
        if k:
            flat = a.flatten(1)
            low = flat <= flat.kthvalue(k, dim=1).values[:, None]
            low[:, 0] = False
            a = flat.masked_fill(low, 0.0).view_as(a)
        a = a + torch.eye(a.shape[-1], device=a.device, dtype=a.dtype)
        a = a / a.sum(-1, keepdim=True)
        rollout = a if rollout is None else a @ rollout
    return pooled_row(rollout, prefix)


def to_heatmap(weights: torch.Tensor, grid: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """(B, gh*gw) patch weights on a (gh, gw) token grid -> (B, H, W) in [0, 1], bilinearly upsampled over an
    image of ``size`` (H, W)."""
    w = weights.reshape(weights.shape[0], 1, *grid).float()  # (B, 1, gh, gw)
    w = F.interpolate(w, size=size, mode="bilinear", align_corners=False)[:, 0]
    lo = w.amin((1, 2), keepdim=True)
    hi = w.amax((1, 2), keepdim=True)
    return (w - lo) / (hi - lo).clamp_min(1e-12)


@torch.inference_mode()
def attention_overlays(model, images: torch.Tensor, transform) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Logits (B, K) of uint8 images (B, 3, H, W) and their heatmaps (B, H, W) on the CPU:
    ``{"last": last-layer class-token attention, "rollout": attention rollout}``."""
    device = next(model.parameters()).device
    logits, maps = model.forward_attention(transform(images.to(device)))
    prefix, grid, size = model.num_prefix_tokens, model.grid_size, tuple(images.shape[-2:])
    return logits.cpu(), {
        "last": to_heatmap(last_layer_cls_attention(maps, prefix).cpu(), grid, size),
        "rollout": to_heatmap(attention_rollout(maps, prefix).cpu(), grid, size),
    }
