"""Optimizer with weight-decay groups, and learning-rate schedules as functions of training progress.

Schedules take progress in [0, 1] rather than a step count so that a wall-clock budget, whose step count is
only known at the end, can drive them: progress is then the share of the budget spent.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from vitlab.config import TrainConfig


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices only: norms, biases, the position embedding and the class token are left alone."""
    skip = set(getattr(model, "no_weight_decay", lambda: set())())
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name in skip else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg.weight_decay)
    # One fused kernel per step on a GPU; on a CPU the multi-tensor (foreach) path.
    fast = {"fused": True} if next(model.parameters()).is_cuda else {"foreach": True}
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, **fast)
    if cfg.optimizer == "adam":
        # Adam's weight_decay is the L2 penalty added to the gradient, as in the seed's optim.Adam.
        return torch.optim.Adam(groups, lr=cfg.lr, **fast)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True, foreach=True)


def lr_factor(schedule: str, progress: float, warmup: float) -> float:
    """Multiplier of the base learning rate at ``progress`` (0 = start, 1 = end of training)."""
    p = min(max(progress, 0.0), 1.0)
    if schedule == "constant":
        return 1.0
    if schedule == "onecycle":
        # torch's OneCycleLR shape (cosine annealing, div_factor 25, final_div_factor 1e4), rise over 30%.
        lo, end, rise = 1 / 25, 1 / 25e4, 0.3
        if p < rise:
            return lo + (1 - lo) * (1 - math.cos(math.pi * p / rise)) / 2
        return end + (1 - end) * (1 + math.cos(math.pi * (p - rise) / (1 - rise))) / 2
    if warmup > 0 and p < warmup:
        return p / warmup
    return 0.5 * (1 + math.cos(math.pi * (p - warmup) / (1 - warmup)))
