"""Named model presets: the seed's model and the ViT paper's sizes (Dosovitskiy et al., 2021, Table 1)."""

from __future__ import annotations

import dataclasses
from typing import Any

from vitlab.config import Config, ModelConfig, apply_mapping
from vitlab.errors import VitlabError

# (dim, depth, heads, mlp_dim) of the paper's sizes; Ti and S are from DeiT (Touvron et al., 2021).
PAPER_SIZES: dict[str, tuple[int, int, int, int]] = {
    "vit-ti": (192, 12, 3, 768),
    "vit-s": (384, 12, 6, 1536),
    "vit-b": (768, 12, 12, 3072),
    "vit-l": (1024, 24, 16, 4096),
    "vit-h": (1280, 32, 16, 5120),
}


# Convolutional-stem variants for small data and small compute (ViT paper 3.1; Hassani et al., 2021).
VARIANTS: dict[str, dict] = {
    # 3 conv stages to a 4x4 grid, 4 blocks: the 10-minute preset's model before air-s (session 3).
    "hybrid": dict(stem="conv", patch_size=8, stem_channels=64, dim=192, heads=4, depth=4, mlp_dim=384, pool="seq"),
    # Close to CCT-7/3x1: conv stem to an 8x8 grid, 7 blocks of dim 256, sequence pooling.
    "cct": dict(stem="conv", patch_size=4, stem_channels=64, dim=256, heads=4, depth=7, mlp_dim=512, pool="seq"),
    # airbench-style whitened, batch-normalised conv stem to a 7x7 grid, then 3 attention blocks: air-s is the
    # model of configs/cifar10-cpu-10min.yaml; air-m is the wider one of the 60-minute probe.
    "air-s": dict(stem="whiten", patch_size=4, stem_channels=48, dim=128, heads=4, depth=3, mlp_dim=256, pool="seq"),
    "air-m": dict(stem="whiten", patch_size=4, stem_channels=64, dim=160, heads=4, depth=3, mlp_dim=320, pool="seq"),
}


def available_presets() -> list[str]:
    return ["seed", *VARIANTS] + [f"{name}[/P]" for name in PAPER_SIZES]


def preset_config(name: str) -> ModelConfig:
    """``seed``, or a paper size with an optional patch size: ``vit-s`` (patch 16), ``vit-s/4``.

    Paper sizes use the paper's attention (output projection, 1/sqrt(head_dim)) and no dropout. Their
    image size is 224 for patches of 14 px or more (the paper's setting) and 32 (CIFAR) below that;
    override with ``--set model.img_size=...``.
    """
    if name == "seed":
        return ModelConfig()
    if name in VARIANTS:
        return dataclasses.replace(ModelConfig(), preset=name, dropout=0.0, attn_proj=True, **VARIANTS[name])
    base, _, patch = name.partition("/")
    if base not in PAPER_SIZES:
        raise VitlabError(f"unknown preset (known: {', '.join(available_presets())})", field="model.preset", value=name)
    if patch and not patch.isdigit():
        raise VitlabError(
            f"the patch size after '/' must be an integer, e.g. {base}/4", field="model.preset", value=name
        )
    patch_size = int(patch) if patch else 16
    dim, depth, heads, mlp_dim = PAPER_SIZES[base]
    return dataclasses.replace(
        ModelConfig(),
        preset=name,
        img_size=224 if patch_size >= 14 else 32,
        patch_size=patch_size,
        dim=dim,
        depth=depth,
        heads=heads,
        mlp_dim=mlp_dim,
        dropout=0.0,
        attn_proj=True,
    )


def apply_config_file(cfg: Config, d: dict[str, Any], origin: str) -> None:
    """Apply a YAML config file's mapping (a preset from configs/) onto ``cfg``: a ``model.preset`` it names is
    expanded first, then every field it sets is applied over it."""
    model = d.get("model") if isinstance(d, dict) else None
    if isinstance(model, dict) and "preset" in model:
        cfg.model = preset_config(str(model["preset"]))
        d = {**d, "model": {k: v for k, v in model.items() if k != "preset"}}
    apply_mapping(cfg, d, origin)
