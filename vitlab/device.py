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


def has_bf16_kernels(device: torch.device) -> bool:
    """Whether bf16 arithmetic can be fast here at all: on a CPU, only where oneDNN has bf16 kernels for it
    (AVX-512 cores; AVX512-BF16 or AMX make them fast). Elsewhere (an AVX2 CPU) bf16 falls back to slow
    conversions: on a Zen 3 EPYC a bf16-autocast training step of air-s took 11x as long as fp32's."""
    return device.type != "cpu" or bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
