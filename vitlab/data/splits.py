"""Held-out validation split."""

from __future__ import annotations

import math

import torch


def stratified_holdout(
    labels: torch.Tensor, fraction: float, max_count: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (train, val): ``fraction`` of each class (at most ``max_count`` overall) held out, seeded.

    Each class keeps at least one training image, so small classes are never emptied.
    """
    n = len(labels)
    want = min(int(round(fraction * n)), max_count)
    if want <= 0:
        return torch.arange(n), torch.empty(0, dtype=torch.long)
    g = torch.Generator().manual_seed(seed)
    share = want / n
    val_parts, train_parts = [], []
    for c in labels.unique(sorted=True):
        idx = (labels == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        k = min(math.floor(share * len(idx) + 0.5), len(idx) - 1)
        val_parts.append(idx[:k])
        train_parts.append(idx[k:])
    return torch.cat(train_parts).sort().values, torch.cat(val_parts).sort().values
