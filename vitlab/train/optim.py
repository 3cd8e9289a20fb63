"""Optimizer with weight-decay groups, and learning-rate schedules as functions of training progress.

Schedules take progress in [0, 1] rather than a step count so that a wall-clock budget, whose step count is
only known at the end, can drive them: progress is then the share of the budget spent.
"""

from __future__ import annotations

import math
from typing import get_args

import torch
from torch import nn

from vitlab.config import Schedule, TrainConfig
from vitlab.errors import VitlabError


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


def muon_params(model: nn.Module) -> list[str]:
    """Names of the weights Muon updates: the 2-D matrices inside the encoder blocks (attention and MLP).

    Muon orthogonalises each matrix's update, which suits hidden layers; the stem, position embedding, norms,
    biases, pooling and head keep AdamW, as Muon's authors advise."""
    return [
        name for name, p in model.named_parameters() if p.requires_grad and p.ndim == 2 and name.startswith("blocks.")
    ]


class MuonAdamW:
    """torch's Muon on ``muon_params``, AdamW on the rest, stepping together behind one optimizer interface.

    Muon's learning rate is scaled to match AdamW's update size (``adjust_lr_fn="match_rms_adamw"``), so one
    ``train.lr`` and one schedule drive both; ``param_groups`` lists every group of both, so the schedule's
    per-step lr reaches them all."""

    def __init__(self, model: nn.Module, lr: float, weight_decay: float, momentum: float):
        named = dict(model.named_parameters())
        matrices = [named[n] for n in muon_params(model)]
        taken = {id(p) for p in matrices}
        rest = [
            {**g, "params": [p for p in g["params"] if id(p) not in taken]} for g in param_groups(model, weight_decay)
        ]
        self.muon = torch.optim.Muon(
            matrices, lr=lr, weight_decay=weight_decay, momentum=momentum, adjust_lr_fn="match_rms_adamw"
        )
        self.adamw = torch.optim.AdamW(rest, lr=lr, foreach=True)
        self.param_groups = self.muon.param_groups + self.adamw.param_groups

    def step(self) -> None:
        self.muon.step()
        self.adamw.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.muon.zero_grad(set_to_none)
        self.adamw.zero_grad(set_to_none)

    def state_dict(self) -> dict:
        return {"muon": self.muon.state_dict(), "adamw": self.adamw.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.muon.load_state_dict(state["muon"])
        self.adamw.load_state_dict(state["adamw"])


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer | MuonAdamW:
    if cfg.optimizer == "muon":
        return MuonAdamW(model, cfg.lr, cfg.weight_decay, cfg.momentum)
    groups = param_groups(model, cfg.weight_decay)
    # One fused kernel per step on a GPU; on a CPU the multi-tensor (foreach) path.
    fast = {"fused": True} if next(model.parameters()).is_cuda else {"foreach": True}
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, **fast)
    if cfg.optimizer == "adam":
        # Adam's weight_decay is the L2 penalty added to the gradient, as in the seed's optim.Adam.
        return torch.optim.Adam(groups, lr=cfg.lr, **fast)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True, foreach=True)
    raise VitlabError(f"train.optimizer: expected adamw, adam, sgd or muon, got {cfg.optimizer!r}")


SCHEDULES = get_args(Schedule)


def lr_factor(schedule: str, progress: float, warmup: float) -> float:
    """Multiplier of the base learning rate at ``progress`` (0 = start, 1 = end of training)."""
    p = min(max(progress, 0.0), 1.0)
    if schedule not in SCHEDULES:
        raise VitlabError(f"train.schedule: expected {', '.join(SCHEDULES)}, got {schedule!r}")
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
    if schedule == "linear":  # to zero at the end (airbench): the last steps average the weights out
        return (1 - p) / (1 - warmup)
    return 0.5 * (1 + math.cos(math.pi * (p - warmup) / (1 - warmup)))  # cosine
