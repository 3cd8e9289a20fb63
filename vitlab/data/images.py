"""Reading one image file of any size and mode into a square uint8 RGB tensor."""

from __future__ import annotations

import io
import struct
import warnings
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image
from torchvision.io import ImageReadMode, decode_image

# torchvision 0.29 warns on every decode that TorchCodec will take over decoding; its decoders are the
# fastest available here (about 4x PIL on small JPEGs) and the pinned version keeps them.
warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities", category=DeprecationWarning)

# PIL's own limit (about 89 megapixels): larger images are refused rather than decoded.
MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485
SMALL_JPEG_BYTES = 256 * 1024

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


def pixel_count(data: bytes) -> int | None:
    """Width x height from the file's header, without decoding; None where decoding cannot blow up.

    A small JPEG cannot hold a huge image (each 8x8 block costs bits), but a PNG or GIF of a few kilobytes can
    declare billions of pixels: a decompression bomb.
    """
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        w, h = struct.unpack(">II", data[16:24])
    elif data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        w, h = struct.unpack("<HH", data[6:10])
    elif data[:3] == b"\xff\xd8\xff" and len(data) < SMALL_JPEG_BYTES:
        return None
    else:
        try:
            with Image.open(io.BytesIO(data)) as im:  # reads the header only
                w, h = im.size
        except Exception:
            return None  # not an image PIL knows: decoding will say so
    return w * h


def decode_rgb(path: Path) -> torch.Tensor:
    """The image at ``path`` as a (3, H, W) uint8 tensor; raises ImageError naming the file."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ImageError(f"{path}: cannot be read ({e.strerror or e})") from None
    if not data:
        raise ImageError(f"{path}: empty file (0 bytes)")
    pixels = pixel_count(data)
    if pixels is not None and pixels > MAX_PIXELS:
        raise ImageError(f"{path}: {pixels:,} pixels is over the decompression-bomb limit of {MAX_PIXELS:,}")
    try:
        img = decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
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
