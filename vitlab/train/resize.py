"""Progressive resizing: smaller training images early in a run, the full size from a set share of it on.

A smaller image costs a convolutional stem fewer pixels and the encoder fewer tokens (24 px instead of 32 leaves
air-m's step at about 0.55 of its cost), so a time budget buys more epochs; the last part of the run trains at the
size the model is tested at, so batch norm and the position embedding end up fitted to it (FFCV's ImageNet
recipe; Touvron et al., 2019, on the train/test resolution discrepancy). The side grows in steps of the patch
size, one token row and column at a time.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def progressive_hw(progress: float, hw: tuple[int, int], start: float, until: float, step: int) -> tuple[int, int]:
    """The training image size (rows, columns) at ``progress`` (0-1) of a run whose images are ``hw``: ``start``
    times each side at first, rising linearly to the full size at ``until``, each side rounded down to a multiple
    of ``step`` (never under two steps) until it reaches the full size."""
    share = start + (1.0 - start) * min(progress / until, 1.0)

    def side(full: int) -> int:
        if share >= 1.0:
            return full
        return min(full, max(2 * step, math.floor(full * share / step + 1e-9) * step))

    return side(hw[0]), side(hw[1])


def resize_batch(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, h, w), antialiased bilinear (the batch itself when the size is already ``hw``)."""
    if tuple(x.shape[-2:]) == tuple(hw):
        return x
    return F.interpolate(x, size=hw, mode="bilinear", antialias=True, align_corners=False)
