"""vitlab models out to the Hugging Face and timm ecosystems (the way in is ``models/pretrained.py``).

Only models with the ViT paper's block layout map exactly: a linear patch projection, the attention output
projection, 1/sqrt(head_dim) scaling, and a class token (Hugging Face) or a class token or mean pooling (timm).
Anything else is refused in one line that says why.
"""

from __future__ import annotations

import math

import torch

from vitlab.config import ModelConfig
from vitlab.errors import VitlabError
from vitlab.models.pretrained import HF_LAYER_NAMES


def check_exportable(cfg: ModelConfig, target: str, pools: tuple[str, ...] = ("cls",)) -> None:
    reasons = []
    if cfg.stem != "linear":
        reasons.append(f"a {cfg.stem} stem (model.stem={cfg.stem}) where {target} has a linear patch projection")
    if not cfg.attn_proj:
        reasons.append(f"no attention output projection (model.attn_proj=false, as the seed) where {target} has one")
    if cfg.attn_scale != "head_dim":
        reasons.append("the seed's attention scaling (model.attn_scale=seed)")
    if cfg.pool not in pools:
        reasons.append(f"{cfg.pool} pooling (model.pool={cfg.pool}); {target} supports {' or '.join(pools)}")
    if reasons:
        raise VitlabError(f"this model cannot be expressed as a {target} ViT: {'; '.join(reasons)}", field="fmt")


def conv_patch_weight(cfg: ModelConfig, weight: torch.Tensor) -> torch.Tensor:
    """vitlab's linear patch projection (D, C*p*p), channel-major within a patch, as a Conv2d kernel (D, C, p, p)."""
    return weight.reshape(cfg.dim, cfg.in_chans, cfg.patch_size, cfg.patch_size)


def to_hf(cfg: ModelConfig, state: dict[str, torch.Tensor], classes: list[str]) -> tuple[dict, dict[str, torch.Tensor]]:
    """(config.json contents, state dict) of a ``transformers`` ``ViTForImageClassification``."""
    check_exportable(cfg, "Hugging Face")
    config = {
        "architectures": ["ViTForImageClassification"],
        "model_type": "vit",
        "hidden_size": cfg.dim,
        "num_hidden_layers": cfg.depth,
        "num_attention_heads": cfg.heads,
        "intermediate_size": cfg.mlp_dim,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "layer_norm_eps": cfg.norm_eps,
        "image_size": cfg.img_size,
        "patch_size": cfg.patch_size,
        "num_channels": cfg.in_chans,
        "qkv_bias": cfg.qkv_bias,
        "encoder_stride": cfg.patch_size,
        "id2label": {str(i): c for i, c in enumerate(classes)},
        "label2id": {c: i for i, c in enumerate(classes)},
    }
    e = "vit.embeddings."
    out = {
        e + "cls_token": state["cls_token"],
        e + "position_embeddings": state["pos_embed"],
        e + "patch_embeddings.projection.weight": conv_patch_weight(cfg, state["patch_embed.proj.weight"]),
        e + "patch_embeddings.projection.bias": state["patch_embed.proj.bias"],
        "vit.layernorm.weight": state["norm.weight"],
        "vit.layernorm.bias": state["norm.bias"],
        "classifier.weight": state["head.weight"],
        "classifier.bias": state["head.bias"],
    }
    for i in range(cfg.depth):
        L, o = f"vit.encoder.layer.{i}.", f"blocks.{i}."
        att = L + "attention.attention."
        for name, w in zip(("query", "key", "value"), state[o + "attn.qkv.weight"].chunk(3)):
            out[f"{att}{name}.weight"] = w
        if cfg.qkv_bias:
            for name, b in zip(("query", "key", "value"), state[o + "attn.qkv.bias"].chunk(3)):
                out[f"{att}{name}.bias"] = b
        for theirs, ours in HF_LAYER_NAMES.items():
            out[f"{L}{theirs}.weight"], out[f"{L}{theirs}.bias"] = state[f"{o}{ours}.weight"], state[f"{o}{ours}.bias"]
    return config, {k: v.contiguous() for k, v in out.items()}


def to_timm(cfg: ModelConfig) -> dict:
    """Keyword arguments of ``timm.create_model(...)`` (beyond ``norm_layer``, see ``timm_norm_eps``) that build the
    same network as ``cfg``; the state dict needs no renaming but for the patch projection (``to_timm_state``)."""
    check_exportable(cfg, "timm", pools=("cls", "mean"))
    ratio = cfg.mlp_dim / cfg.dim
    if int(cfg.dim * ratio) != cfg.mlp_dim:  # timm builds int(dim * mlp_ratio): nudge the float up past rounding
        ratio = math.nextafter(ratio, math.inf)
    if int(cfg.dim * ratio) != cfg.mlp_dim:
        raise VitlabError(
            f"timm cannot build an MLP of {cfg.mlp_dim} units for dim {cfg.dim}", field="fmt", value="timm"
        )
    return {
        "img_size": cfg.img_size,
        "patch_size": cfg.patch_size,
        "in_chans": cfg.in_chans,
        "num_classes": cfg.num_classes,
        "embed_dim": cfg.dim,
        "depth": cfg.depth,
        "num_heads": cfg.heads,
        "mlp_ratio": ratio,
        "qkv_bias": cfg.qkv_bias,
        "class_token": cfg.pool == "cls",
        "global_pool": "token" if cfg.pool == "cls" else "avg",
        "fc_norm": False,
    }


def to_timm_state(cfg: ModelConfig, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    names = {"mlp.0": "mlp.fc1", "mlp.3": "mlp.fc2"}
    out = {}
    for key, value in state.items():
        for ours, theirs in names.items():
            key = key.replace(f".{ours}.", f".{theirs}.")
        out[key] = value
    out["patch_embed.proj.weight"] = conv_patch_weight(cfg, state["patch_embed.proj.weight"])
    return {k: v.contiguous() for k, v in out.items()}


def timm_model(path: str) -> torch.nn.Module:
    """The timm model of a ``vitlab export --format timm`` file, weights loaded (needs timm)."""
    import functools
    import json

    import timm
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(path, framework="pt") as f:
        meta = f.metadata() or {}
    if "timm_kwargs" not in meta:
        raise VitlabError(f"{path}: not written by 'vitlab export --format timm' (no timm_kwargs metadata)")
    norm = functools.partial(torch.nn.LayerNorm, eps=float(meta["norm_eps"]))
    model = timm.create_model(
        "vit_base_patch16_224", pretrained=False, norm_layer=norm, **json.loads(meta["timm_kwargs"])
    )
    model.load_state_dict(load_file(path))
    return model.eval()
