"""Batched augmentation and normalisation on the device, on uint8 batches (no worker processes).

Holding the dataset as one uint8 tensor and augmenting whole batches at once (airbench's approach) keeps the
CPU free for the model: one gather for the crops, one ``where`` for the flips, one fused normalisation. The
optional TrivialAugment/RandAugment is torchvision's, image by image (its ops differ per image); random erasing
is batched like the rest.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from vitlab.config import ImageSize, image_hw
from vitlab.data.images import fit_image
from vitlab.errors import VitlabError


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator, mode: str = "zeros") -> torch.Tensor:
    """Pad each side by ``padding`` (zeros, or the image mirrored with ``mode="reflect"``) and cut a random window
    of the original size from every image."""
    B, C, H, W = x.shape
    if mode == "reflect":  # reflection is not implemented for uint8: pad in float, exact for 0..255 values
        padded = F.pad(x.float(), (padding,) * 4, mode="reflect").to(x.dtype)
    else:
        padded = F.pad(x, (padding,) * 4)  # (B, C, H+2p, W+2p)
    dy = torch.randint(0, 2 * padding + 1, (B,), generator=generator, device=x.device)
    dx = torch.randint(0, 2 * padding + 1, (B,), generator=generator, device=x.device)
    rows = dy[:, None] + torch.arange(H, device=x.device)  # (B, H)
    cols = dx[:, None] + torch.arange(W, device=x.device)  # (B, W)
    b = torch.arange(B, device=x.device)[:, None, None, None]
    c = torch.arange(C, device=x.device)[None, :, None, None]
    return padded[b, c, rows[:, None, :, None], cols[:, None, None, :]]  # (B, C, H, W)


def random_hflip(x: torch.Tensor, generator: torch.Generator, flip: torch.Tensor | None = None) -> torch.Tensor:
    """Mirror a random half of the batch, or the images where the boolean mask ``flip`` (B,) is set."""
    if flip is None:
        flip = torch.rand(x.shape[0], generator=generator, device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def alternating_flips(idx: torch.Tensor, epoch: int, seed: int, n: int) -> torch.Tensor:
    """airbench's deterministic alternating flip: each image gets a random side once (seeded, per image), then
    takes the other side every other epoch, so over any two epochs the model sees every image both ways
    (random flips leave a quarter of the images unflipped, or flipped, twice in a row). Returns a (B,) mask."""
    first = torch.randint(0, 2, (n,), generator=torch.Generator().manual_seed(seed)).bool()
    return first[idx.cpu()] ^ bool(epoch % 2)


def random_erasing(
    x: torch.Tensor,
    p: float,
    generator: torch.Generator,
    area: tuple[float, float] = (0.02, 1 / 3),
    ratio: tuple[float, float] = (0.3, 3.3),
) -> torch.Tensor:
    """Zero (the mean, after normalisation) one random rectangle in each image with probability ``p``
    (Zhong et al., 2020; torchvision's RandomErasing ranges), for the whole batch at once."""
    B, _, H, W = x.shape
    dev = x.device
    u = torch.rand(B, 5, generator=generator, device=dev)
    target = H * W * (area[0] + (area[1] - area[0]) * u[:, 0])
    log_r = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[:, 1]
    h = (target * log_r.exp()).sqrt().round().clamp(1, H)
    w = (target / log_r.exp()).sqrt().round().clamp(1, W)
    top = ((H - h + 1) * u[:, 2]).floor()
    left = ((W - w + 1) * u[:, 3]).floor()
    rows = torch.arange(H, device=dev)[None, :]
    cols = torch.arange(W, device=dev)[None, :]
    in_rows = (rows >= top[:, None]) & (rows < (top + h)[:, None])  # (B, H)
    in_cols = (cols >= left[:, None]) & (cols < (left + w)[:, None])  # (B, W)
    erase = in_rows[:, :, None] & in_cols[:, None, :] & (u[:, 4] < p)[:, None, None]  # (B, H, W)
    return x.masked_fill(erase[:, None], 0.0)


# data.auto_augment's policies (config.AutoAugment less "none", its off switch; tests/test_registries.py keeps the two
# in step): torchvision's, each image drawing its own op.
AUTO_AUGMENT: dict[str, Callable[[], v2.Transform]] = {
    "trivialaugment": v2.TrivialAugmentWide,
    "randaugment": v2.RandAugment,
}


def lookup_auto_augment(name: str) -> Callable[[], v2.Transform]:
    if name not in AUTO_AUGMENT:
        raise VitlabError(
            f"data.auto_augment: unknown policy {name!r} (known: {', '.join(AUTO_AUGMENT)}; none turns it off)"
        )
    return AUTO_AUGMENT[name]


def auto_augment(x: torch.Tensor, policy: str) -> torch.Tensor:
    """An ``AUTO_AUGMENT`` policy on each uint8 image of the batch (its own op each)."""
    op = lookup_auto_augment(policy)()
    return torch.stack([op(img) for img in x])


class BatchTransform:
    """uint8 (B, C, h, w) -> normalised float (B, C, H, W) at ``img_size`` (a side or [height, width]), with the
    training augmentation when asked."""

    def __init__(
        self,
        mean: Sequence[float],
        std: Sequence[float],
        img_size: ImageSize,
        *,
        crop_padding: int = 0,
        crop_mode: str = "zeros",
        hflip: bool = False,
        auto_augment: str = "none",
        random_erasing: float = 0.0,
        device: torch.device | str = "cpu",
    ):
        self.img_size = image_hw(img_size)
        self.crop_padding = crop_padding
        self.crop_mode = crop_mode
        self.hflip = hflip
        self.auto_augment = auto_augment
        self.random_erasing = random_erasing
        # (x / 255 - mean) / std folded into one subtract and one multiply on the raw 0..255 values.
        self.shift = (torch.tensor(mean, device=device) * 255).view(1, -1, 1, 1)
        self.scale = (1.0 / (torch.tensor(std, device=device) * 255)).view(1, -1, 1, 1)

    def __call__(
        self, x: torch.Tensor, generator: torch.Generator | None = None, flip: torch.Tensor | None = None
    ) -> torch.Tensor:
        """With a ``generator`` the batch is augmented (training); without, only resized and normalised.
        ``flip``: which images to mirror (a (B,) mask, e.g. ``alternating_flips``); default: a random half."""
        if generator is not None:
            if self.crop_padding > 0:
                x = random_crop(x, self.crop_padding, generator, self.crop_mode)
            if self.hflip:
                x = random_hflip(x, generator, None if flip is None else flip.to(x.device))
            if self.auto_augment != "none":
                x = auto_augment(x, self.auto_augment)
        x = x.float()
        if tuple(x.shape[-2:]) != self.img_size:  # stored smaller, or square (CIFAR) for a rectangular model
            x = fit_image(x, self.img_size)  # the centred region of the model's aspect ratio, resized
        x = (x - self.shift).mul_(self.scale)
        if generator is not None and self.random_erasing > 0:
            x = random_erasing(x, self.random_erasing, generator)
        return x
