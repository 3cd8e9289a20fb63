"""Optimizers with weight-decay groups, and learning-rate schedules as functions of training progress, each a
registry of named factories (``OPTIMIZERS``, ``SCHEDULES``) whose names are the config's choices.

Schedules take progress in [0, 1] rather than a step count so that a wall-clock budget, whose step count is
only known at the end, can drive them: progress is then the share of the budget spent.
"""

from __future__ import annotations

import math
from typing import Any, Callable, TypeVar

import torch
from torch import nn

from vitlab.config import TrainConfig
from vitlab.device import has_bf16_kernels
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


def muon_params(model: nn.Module, convs: bool = False) -> list[str]:
    """Names of the weights Muon updates: the 2-D matrices inside the encoder blocks (attention and MLP), and with
    ``convs`` the convolution filters too (4-D, each bank updated as a c_out x (c_in k k) matrix, as in airbench's
    Muon record for CIFAR-10 CNNs).

    Muon orthogonalises each matrix's update, which suits hidden layers; the position embedding, norms, biases,
    pooling and head keep AdamW, as Muon's authors advise, and so does the stem unless ``convs``."""
    return [
        name
        for name, p in model.named_parameters()
        if p.requires_grad and ((p.ndim == 2 and name.startswith("blocks.")) or (convs and p.ndim == 4))
    ]


def _as_matrix(p: nn.Parameter) -> nn.Parameter:
    """A 2-D leaf parameter sharing ``p``'s storage (torch's Muon takes matrices only): Muon's in-place updates of
    it are updates of ``p``, and a hook keeps its gradient a view of ``p``'s after every backward, so the gradient
    scaler and clipping, which act on ``p.grad`` in place, reach it too."""
    flat = nn.Parameter(p.detach().view(p.shape[0], -1))  # (c_out, c_in * k * k); p is contiguous

    def share_grad(q: torch.Tensor) -> None:
        flat.grad = q.grad.view(flat.shape)

    p.register_post_accumulate_grad_hook(share_grad)
    return flat


def newton_schulz(
    g: torch.Tensor, coefficients: tuple[float, float, float], steps: int, eps: float, dtype: torch.dtype
) -> torch.Tensor:
    """The quintic Newton-Schulz iteration torch's Muon uses to orthogonalise an update (a, b, c and ``steps`` as
    there), in ``dtype``: torch's always computes in bf16, which costs a third of air-s's step on a CPU without
    bf16 kernels; in fp32 it is exact and fast there. Same operations in the same order as torch's."""
    a, b, c = coefficients
    x = g.to(dtype, copy=True)  # a copy in any dtype: g may be the momentum buffer itself
    tall = g.size(0) > g.size(1)
    if tall:
        x = x.T
    x.div_(x.norm().clamp(min=eps))  # spectral norm at most 1
    for _ in range(steps):
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.T if tall else x


class Muon(torch.optim.Muon):
    """torch's Muon (same hyper-parameters, state and update, the learning rate matched to AdamW's update size as
    by its ``adjust_lr_fn="match_rms_adamw"``) with the Newton-Schulz iteration in ``ns_dtype``."""

    def __init__(self, params: list[nn.Parameter], *, ns_dtype: torch.dtype, **kwargs: Any):
        super().__init__(params, adjust_lr_fn="match_rms_adamw", **kwargs)
        self.ns_dtype = ns_dtype

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            lr, momentum, decay = group["lr"], group["momentum"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p.grad, memory_format=torch.preserve_format)
                buf = state["momentum_buffer"]
                buf.lerp_(p.grad, 1 - momentum)
                update = p.grad.lerp(buf, momentum) if group["nesterov"] else buf
                update = newton_schulz(update, group["ns_coefficients"], group["ns_steps"], group["eps"], self.ns_dtype)
                p.mul_(1 - lr * decay)
                p.add_(update, alpha=-lr * 0.2 * math.sqrt(max(p.shape)))


class MuonAdamW:
    """``Muon`` on ``muon_params``, AdamW on the rest, stepping together behind one optimizer interface.

    Muon's learning rate is scaled to match AdamW's update size (torch's ``adjust_lr_fn="match_rms_adamw"``), so one
    ``train.lr`` and one schedule drive both; ``param_groups`` lists every group of both, so the schedule's
    per-step lr reaches them all."""

    def __init__(self, model: nn.Module, lr: float, weight_decay: float, momentum: float, convs: bool = False):
        named = dict(model.named_parameters())
        chosen = [named[n] for n in muon_params(model, convs)]
        taken = {id(p) for p in chosen}
        # Filters are handed to Muon as matrices sharing their storage; their own gradients are cleared here.
        self.filters = [p for p in chosen if p.ndim != 2]
        matrices = [p if p.ndim == 2 else _as_matrix(p) for p in chosen]
        rest = [
            {**g, "params": [p for p in g["params"] if id(p) not in taken]} for g in param_groups(model, weight_decay)
        ]
        # bf16 Newton-Schulz (torch's choice) only where bf16 has fast kernels; fp32 elsewhere.
        ns_dtype = torch.bfloat16 if has_bf16_kernels(next(model.parameters()).device) else torch.float32
        self.muon = Muon(matrices, lr=lr, weight_decay=weight_decay, momentum=momentum, ns_dtype=ns_dtype)
        self.adamw = torch.optim.AdamW(rest, lr=lr, foreach=True)

    @property
    def param_groups(self) -> list[dict]:
        # Read anew each time: load_state_dict replaces both optimizers' group dicts, and a list kept from before
        # would leave a resumed run's schedule setting the learning rate of groups no longer in use.
        return self.muon.param_groups + self.adamw.param_groups

    def step(self) -> None:
        self.muon.step()
        self.adamw.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.muon.zero_grad(set_to_none)
        self.adamw.zero_grad(set_to_none)
        if set_to_none:  # otherwise zeroing the matrices' gradients (views) has zeroed the filters' too
            for p in self.filters:
                p.grad = None

    def state_dict(self) -> dict:
        return {"muon": self.muon.state_dict(), "adamw": self.adamw.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.muon.load_state_dict(state["muon"])
        self.adamw.load_state_dict(state["adamw"])


OptimizerLike = torch.optim.Optimizer | MuonAdamW
OptimizerFactory = Callable[[nn.Module, TrainConfig], OptimizerLike]
# (progress in [0, 1], train.warmup) -> multiplier of the base learning rate.
ScheduleFn = Callable[[float, float], float]
T = TypeVar("T")


def _lookup(registry: dict[str, T], name: str, key: str, kind: str) -> T:
    """``registry[name]``, or an error naming the config field and the known names."""
    if name not in registry:
        raise VitlabError(f"{key}: unknown {kind} {name!r} (known: {', '.join(registry)})")
    return registry[name]


def _fast(model: nn.Module) -> dict[str, bool]:
    """One fused kernel per step on a GPU; on a CPU the multi-tensor (foreach) path."""
    return {"fused": True} if next(model.parameters()).is_cuda else {"foreach": True}


def _adamw(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, **_fast(model))


def _adam(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    # Adam's weight_decay is the L2 penalty added to the gradient, as in the seed's optim.Adam.
    return torch.optim.Adam(param_groups(model, cfg.weight_decay), lr=cfg.lr, **_fast(model))


def _sgd(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg.weight_decay)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True, foreach=True)


def _muon(model: nn.Module, cfg: TrainConfig) -> MuonAdamW:
    return MuonAdamW(model, cfg.lr, cfg.weight_decay, cfg.momentum, convs=cfg.muon_convs)


# train.optimizer's values (config.Optimizer; tests/test_registries.py keeps the two in step).
OPTIMIZERS: dict[str, OptimizerFactory] = {"adamw": _adamw, "adam": _adam, "sgd": _sgd, "muon": _muon}


def lookup_optimizer(name: str) -> OptimizerFactory:
    return _lookup(OPTIMIZERS, name, "train.optimizer", "optimizer")


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> OptimizerLike:
    return lookup_optimizer(cfg.optimizer)(model, cfg)


def _with_warmup(shape: ScheduleFn) -> ScheduleFn:
    """A linear rise from 0 over the first ``warmup`` share of training, then ``shape``."""

    def factor(p: float, warmup: float) -> float:
        if warmup > 0 and p < warmup:
            return p / warmup
        return shape(p, warmup)

    return factor


def _cosine(p: float, warmup: float) -> float:
    return 0.5 * (1 + math.cos(math.pi * (p - warmup) / (1 - warmup)))


def _linear(p: float, warmup: float) -> float:
    # To zero at the end (airbench): the last steps average the weights out.
    return (1 - p) / (1 - warmup)


def _onecycle(p: float, warmup: float) -> float:
    # torch's OneCycleLR shape (cosine annealing, div_factor 25, final_div_factor 1e4), rising over 30% of training
    # whatever train.warmup says.
    lo, end, rise = 1 / 25, 1 / 25e4, 0.3
    if p < rise:
        return lo + (1 - lo) * (1 - math.cos(math.pi * p / rise)) / 2
    return end + (1 - end) * (1 + math.cos(math.pi * (p - rise) / (1 - rise))) / 2


def _constant(p: float, warmup: float) -> float:
    return 1.0  # no warm-up either


# train.schedule's values (config.Schedule; tests/test_registries.py keeps the two in step).
SCHEDULES: dict[str, ScheduleFn] = {
    "cosine": _with_warmup(_cosine),
    "linear": _with_warmup(_linear),
    "onecycle": _onecycle,
    "constant": _constant,
}


def lookup_schedule(name: str) -> ScheduleFn:
    return _lookup(SCHEDULES, name, "train.schedule", "schedule")


def lr_factor(schedule: str, progress: float, warmup: float) -> float:
    """Multiplier of the base learning rate at ``progress`` (0 = start, 1 = end of training)."""
    return lookup_schedule(schedule)(min(max(progress, 0.0), 1.0), warmup)
