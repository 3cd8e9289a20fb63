"""Reading one image file of any size and mode into a square uint8 RGB tensor."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image
from torchvision.io import ImageReadMode, decode_image, read_file

# torchvision 0.29 warns on every decode that TorchCodec will take over decoding; its decoders are the
# fastest available here (about 4x PIL on small JPEGs) and the pinned version keeps them.
warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities", category=DeprecationWarning)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif")


class ImageError(Exception):
    """A file that cannot be read as an image; the message names the file and the reason."""


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def _decode_with_pil(path: Path) -> torch.Tensor:
    # PIL covers what torchvision's decoders do not (TIFF, BMP, CMYK, 16-bit, palette with alpha).
    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB"))
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1)  # (3, H, W)


def decode_rgb(path: Path) -> torch.Tensor:
    """The image at ``path`` as a (3, H, W) uint8 tensor; raises ImageError naming the file."""
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: empty file (0 bytes)")
    try:
        img = decode_image(read_file(str(path)), mode=ImageReadMode.RGB)
        if img.dtype != torch.uint8:  # 16-bit PNGs decode as uint16
            img = TF.to_dtype(img, torch.uint8, scale=True)
    except (RuntimeError, ValueError):
        try:
            img = _decode_with_pil(path)
        except Exception as e:  # PIL raises many types (UnidentifiedImageError, OSError, DecompressionBomb...)
            raise ImageError(f"{path}: not a readable image ({type(e).__name__}: {e})") from None
    return img


def fit_square(img: torch.Tensor, size: int) -> torch.Tensor:
    """Resize the shorter side to ``size`` then centre-crop to ``size`` x ``size`` (timm's eval transform)."""
    if img.shape[-2:] == (size, size):
        return img
    img = TF.resize(img, size, antialias=True)
    return TF.center_crop(img, [size, size])


def read_image(path: Path, size: int) -> torch.Tensor:
    """(3, size, size) uint8 RGB from any image file."""
    return fit_square(decode_rgb(Path(path)), size)
