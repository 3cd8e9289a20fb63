"""Class-specific explanations of any vitlab model: where the evidence for *this* class lies in the image.

Methods (each gives one weight per patch token, shown as a heatmap over the image):
- ``attention``: the last layer's attention of the class token (or of every token, without one), heads fused.
- ``rollout``: attention rollout (Abnar & Zuidema, 2020) with head fusion and a discard ratio (vit-explain).
  Neither depends on the class asked about.
- ``grad-rollout``: gradient-weighted rollout (Chefer et al., CVPR 2021): each layer's maps weighted by the
  gradient of the class score, negative parts dropped, heads averaged, accumulated as R <- R + A R.
- ``gradcam``: Grad-CAM (Selvaraju et al., 2017) on the tokens entering the last block's attention: channel
  weights are the class score's gradients averaged over tokens; the token grid is reshaped internally (the
  step users of pytorch-grad-cam must write themselves).
"""

from __future__ import annotations

import torch

from vitlab.models.attention import attention_rollout, last_layer_cls_attention, pooled_row, to_heatmap
from vitlab.models.vit import VisionTransformer

METHODS = ("attention", "rollout", "grad-rollout", "gradcam")


def _class_score(logits: torch.Tensor, target: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    target = logits.argmax(1) if target is None else target
    return logits.gather(1, target[:, None]).sum(), target


def grad_rollout(model: VisionTransformer, x: torch.Tensor, target: torch.Tensor | None):
    """Logits and the gradient-weighted rollout (B, N) of the class ``target`` (default: the predicted one)."""
    with torch.enable_grad():
        logits, maps = model.forward_attention(x)
        score, target = _class_score(logits, target)
        grads = torch.autograd.grad(score, maps)
    tokens = maps[0].shape[-1]
    r = torch.eye(tokens, dtype=x.dtype, device=x.device).expand(x.shape[0], tokens, tokens)
    for attn, grad in zip(maps, grads):
        a = (grad * attn).clamp_min(0).mean(1)  # (B, T, T): heads averaged after the gradient weighting
        r = r + a @ r
    return logits.detach(), pooled_row(r.detach(), model.num_prefix_tokens)


def gradcam(model: VisionTransformer, x: torch.Tensor, target: torch.Tensor | None):
    """Logits and Grad-CAM (B, N) on the tokens entering the last block's attention (its first LayerNorm)."""
    captured: list[torch.Tensor] = []
    hook = model.blocks[-1].norm1.register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        with torch.enable_grad():
            logits, _ = model.forward_attention(x)
            score, target = _class_score(logits, target)
            (grad,) = torch.autograd.grad(score, captured[-1])
    finally:
        hook.remove()
    tokens = captured[-1][:, model.num_prefix_tokens :].detach()  # (B, N, D)
    weights = grad[:, model.num_prefix_tokens :].mean(1, keepdim=True)  # (B, 1, D): each channel's importance
    return logits.detach(), (tokens * weights).sum(-1).clamp_min(0)  # (B, N)


def explain(
    model: VisionTransformer,
    x: torch.Tensor,
    method: str = "grad-rollout",
    target: torch.Tensor | None = None,
    fusion: str = "mean",
    discard: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (B, K) and heatmaps (B, H, W) in [0, 1] of normalised images ``x`` (B, C, H, W) for the classes
    ``target`` (B,) (default: each image's predicted class)."""
    model.eval()
    prefix = model.num_prefix_tokens
    if method in ("attention", "rollout"):
        with torch.no_grad():
            logits, maps = model.forward_attention(x)
        weights = (
            last_layer_cls_attention(maps, prefix, fusion)
            if method == "attention"
            else attention_rollout(maps, prefix, fusion, discard)
        )
    elif method == "grad-rollout":
        logits, weights = grad_rollout(model, x, target)
    elif method == "gradcam":
        logits, weights = gradcam(model, x, target)
    else:
        raise ValueError(f"method: expected one of {', '.join(METHODS)}, got {method!r}")
    return logits, to_heatmap(weights.float().cpu(), model.grid_size, tuple(x.shape[-2:]))
