"""Batched augmentation and normalisation on the device, on uint8 batches (no worker processes).

Holding the dataset as one uint8 tensor and augmenting whole batches at once (airbench's approach) keeps the
CPU free for the model: one gather for the crops, one ``where`` for the flips, one fused normalisation.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Zero-pad each side by ``padding`` and cut a random window of the original size from every image."""
    B, C, H, W = x.shape
    padded = F.pad(x, (padding,) * 4)  # (B, C, H+2p, W+2p)
    dy = torch.randint(0, 2 * padding + 1, (B,), generator=generator, device=x.device)
    dx = torch.randint(0, 2 * padding + 1, (B,), generator=generator, device=x.device)
    rows = dy[:, None] + torch.arange(H, device=x.device)  # (B, H)
    cols = dx[:, None] + torch.arange(W, device=x.device)  # (B, W)
    b = torch.arange(B, device=x.device)[:, None, None, None]
    c = torch.arange(C, device=x.device)[None, :, None, None]
    return padded[b, c, rows[:, None, :, None], cols[:, None, None, :]]  # (B, C, H, W)


def random_hflip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    flip = torch.rand(x.shape[0], generator=generator, device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)


class BatchTransform:
    """uint8 (B, C, h, w) -> normalised float (B, C, S, S), with the training augmentation when asked."""

    def __init__(
        self,
        mean: Sequence[float],
        std: Sequence[float],
        img_size: int,
        *,
        crop_padding: int = 0,
        hflip: bool = False,
        device: torch.device | str = "cpu",
    ):
        self.img_size = img_size
        self.crop_padding = crop_padding
        self.hflip = hflip
        # (x / 255 - mean) / std folded into one subtract and one multiply on the raw 0..255 values.
        self.shift = (torch.tensor(mean, device=device) * 255).view(1, -1, 1, 1)
        self.scale = (1.0 / (torch.tensor(std, device=device) * 255)).view(1, -1, 1, 1)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """With a ``generator`` the batch is augmented (training); without, only resized and normalised."""
        if generator is not None:
            if self.crop_padding > 0:
                x = random_crop(x, self.crop_padding, generator)
            if self.hflip:
                x = random_hflip(x, generator)
        x = x.float()
        if x.shape[-1] != self.img_size or x.shape[-2] != self.img_size:
            x = F.interpolate(x, size=(self.img_size, self.img_size), mode="bilinear", antialias=True, align_corners=False)
        return (x - self.shift).mul_(self.scale)
