"""One optimisation step's forward and backward, in cache-sized micro-batches on the CPU.

A ViT treats every image independently (no batch norm), so the gradient of a batch is the sum of the gradients
of its parts: splitting a batch of 512 into micro-batches of 64 gives the same update, up to the order of
floating-point sums. On a CPU the smaller activations stay in cache instead of streaming through memory, which
makes the same step about 15% faster here (benchmarks/RESULTS.md). On a GPU the whole batch goes at once.
"""

from __future__ import annotations

import contextlib
import copy
import math
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from vitlab.device import has_bf16_kernels

CPU_MICRO_BATCH = 64
CPU_INFER_CHUNK = 32
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
MEMORY_FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
# The probe leaves its first candidate (fp32, contiguous) only for one clearly faster: within noise, fp32's exact
# maths and the plain layout are worth more.
PROBE_MARGIN = 0.95


def micro_batch_size(requested: int, device: torch.device) -> int:
    """``requested`` when set (> 0); otherwise the CPU default, or no splitting on an accelerator."""
    if requested > 0:
        return requested
    return CPU_MICRO_BATCH if device.type == "cpu" else 1 << 30


def infer_chunk_size(requested: int, device: torch.device) -> int:
    if requested > 0:
        return requested
    return CPU_INFER_CHUNK if device.type == "cpu" else 1024


def forward_backward(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    micro_batch: int,
    label_smoothing: float = 0.0,
    precision: str = "fp32",
    scaler: torch.amp.GradScaler | None = None,
    class_weights: torch.Tensor | None = None,
    memory_format: str = "contiguous",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Accumulate the gradient of the batch's mean loss; returns (mean loss, number correct) as tensors.

    ``y`` holds class indices (B,) or, after mixup/cutmix, class probabilities (B, K); "correct" then counts
    the predictions that hit the class with the largest share. ``precision`` "bf16"/"fp16" runs the forward
    pass under autocast; with fp16 the loss is scaled by ``scaler`` before the backward pass, so small
    gradients do not underflow (the caller unscales and steps through the scaler). ``class_weights`` (K,)
    weights each image's loss by its class (the sum is still divided by the batch size). ``memory_format``
    lays out image batches (B, C, H, W) for the model: "contiguous" or "channels_last" (same maths).
    """
    dtype = AUTOCAST_DTYPES.get(precision)
    if x.ndim == 4:
        x = x.contiguous(memory_format=MEMORY_FORMATS[memory_format])  # the micro-batches below keep the layout
    total = torch.zeros((), device=x.device)
    correct = torch.zeros((), dtype=torch.long, device=x.device)
    pieces = list(zip(x.split(micro_batch), y.split(micro_batch)))
    # Under DDP the gradients are averaged across ranks once, in the last micro-batch's backward.
    no_sync = getattr(model, "no_sync", contextlib.nullcontext)
    for i, (xc, yc) in enumerate(pieces):
        with no_sync() if i < len(pieces) - 1 else contextlib.nullcontext():
            with torch.autocast(device_type=x.device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
                logits = model(xc).float()  # the loss itself in fp32
            loss = F.cross_entropy(
                logits, yc, weight=class_weights, label_smoothing=label_smoothing, reduction="sum"
            ) / len(y)
            (scaler.scale(loss) if scaler is not None else loss).backward()
        total += loss.detach()
        target = yc if yc.ndim == 1 else yc.argmax(1)
        correct += (logits.detach().argmax(1) == target).sum()
    return total, correct


def batch_mixer(mixup: float, cutmix: float, num_classes: int):
    """A callable (images, labels) -> (mixed images, soft labels), or None when both are off."""
    from torchvision.transforms import v2

    mixers = []
    if mixup > 0:
        mixers.append(v2.MixUp(alpha=mixup, num_classes=num_classes))
    if cutmix > 0:
        mixers.append(v2.CutMix(alpha=cutmix, num_classes=num_classes))
    if not mixers:
        return None
    return mixers[0] if len(mixers) == 1 else v2.RandomChoice(mixers)


@torch.inference_mode()
def chunked_forward(model: nn.Module, x: torch.Tensor, chunk: int) -> torch.Tensor:
    """Logits of a float batch, computed ``chunk`` images at a time (same maths, kinder to the cache)."""
    return torch.cat([model(part) for part in x.split(chunk)])


def probe_step(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    micro_batch: int,
    candidates: list[tuple[str, str]],
    rounds: int = 5,
) -> dict[tuple[str, str], float]:
    """Median seconds of a training step of a copy of ``model`` on one real batch for each (precision, memory
    format) candidate; a bf16 candidate on a device without bf16 kernels (``has_bf16_kernels``) is not timed (its
    time is then infinite). bf16 only pays where the hardware has fast bf16 kernels (AVX512-BF16/AMX CPUs, recent
    GPUs) and layers large enough to use them, and channels_last where the convolutions' kernels prefer it, so
    both are measured on the machine at hand, never assumed. The candidates take turns, one step each per round:
    a shared machine's speed drifts over seconds (just after the data is decoded, for one), and timing each
    candidate in a block of its own once put that drift on bf16 alone and chose fp32 for an hour-long run. The
    copy keeps the model's weights, batch-norm statistics and random streams untouched."""
    probe = copy.deepcopy(model).train()
    # bf16 without its kernels is left untimed, unless nothing else is asked for (its time is then needed).
    timed = [c for c in candidates if c[0] != "bf16" or has_bf16_kernels(x.device)] or list(candidates)
    times: dict[tuple[str, str], list[float]] = {c: [] for c in timed}
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        for r in range(rounds + 1):  # round 0 warms up kernels and caches
            for precision, layout in timed:
                start = time.perf_counter()
                forward_backward(probe, x, y, micro_batch=micro_batch, precision=precision, memory_format=layout)
                if x.device.type == "cuda":
                    torch.cuda.synchronize(x.device)
                if r > 0:
                    times[precision, layout].append(time.perf_counter() - start)
    return {c: statistics.median(times[c]) if c in times else math.inf for c in candidates}


def fastest(timings: dict[tuple[str, str], float]) -> tuple[str, str]:
    """The first candidate of ``timings``, unless a later one is clearly (``PROBE_MARGIN``) faster than the choice
    so far."""
    choice = next(iter(timings))
    for candidate, seconds in timings.items():
        if seconds < PROBE_MARGIN * timings[choice]:
            choice = candidate
    return choice


def class_weights(spec: str, labels: torch.Tensor, classes: list[str], device: torch.device) -> torch.Tensor | None:
    """Per-class loss weights (K,) from ``train.class_weights``: "none" (None); "balanced": n / (K * n_k), so
    every class carries the same total weight and the average image weighs 1 (scikit-learn's "balanced"); or
    a JSON file with a list of K numbers or a {class name: weight} mapping (absent classes weigh 1)."""
    import json
    from pathlib import Path

    from vitlab.errors import VitlabError

    k = len(classes)
    if spec == "none":
        return None
    if spec == "balanced":
        counts = torch.bincount(labels.cpu(), minlength=k).double()
        return (len(labels) / (k * counts.clamp(min=1))).float().to(device)
    path = Path(spec)
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise VitlabError(
            f"train.class_weights: {spec}: expected none, balanced or a readable JSON file ({e})"
        ) from None
    if isinstance(raw, dict):
        unknown = sorted(set(raw) - set(classes))
        if unknown:
            raise VitlabError(f"train.class_weights: {spec}: unknown classes {unknown[:5]} (known: {classes[:10]})")
        raw = [raw.get(c, 1.0) for c in classes]
    if (
        not isinstance(raw, list)
        or len(raw) != k
        or not all(isinstance(w, (int, float)) and not isinstance(w, bool) and 0 <= w < 1e6 for w in raw)
    ):
        raise VitlabError(
            f"train.class_weights: {spec}: expected {k} numbers in [0, 1e6) (one per class) "
            "or a {class: weight} mapping"
        )
    return torch.tensor(raw, dtype=torch.float32, device=device)
