"""Model definitions and the factory that builds them from presets."""

from __future__ import annotations

from typing import Any

from vitlab.config import Config, set_value, validate
from vitlab.models.presets import available_presets, preset_config
from vitlab.models.vit import VisionTransformer, patchify


def create_model(name: str = "seed", num_classes: int = 10, **overrides: Any) -> VisionTransformer:
    """Build a model from a preset name (``seed``, ``vit-s/4`` ...) with any ``ModelConfig`` field overridden.

    >>> model = create_model("seed", num_classes=10, dropout=0.0)
    """
    cfg = Config(model=preset_config(name))
    set_value(cfg, "model.num_classes", num_classes)
    for key, value in overrides.items():
        set_value(cfg, f"model.{key}", value)
    validate(cfg)
    return VisionTransformer(cfg.model)


__all__ = ["VisionTransformer", "create_model", "available_presets", "preset_config", "patchify"]
