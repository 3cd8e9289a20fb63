"""Which torch device a run or an inference uses."""

from __future__ import annotations

import torch

from vitlab.errors import VitlabError


def resolve_device(name: str | torch.device) -> torch.device:
    """``auto`` (a CUDA GPU when there is one, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise VitlabError(f"train.device: {name} requested but no CUDA GPU is available (use cpu or auto)")
    try:
        return torch.device(name)
    except RuntimeError:
        raise VitlabError(f"train.device: expected auto, cpu, cuda or cuda:N, got {name!r}") from None
