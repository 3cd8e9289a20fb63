"""Reading one image file of any size and mode into a uint8 RGB tensor of the model's image size."""

from __future__ import annotations

import io
import os
import re
import stat
import struct
import warnings
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image
from torchvision.io import ImageReadMode, decode_image

from vitlab.config import ImageSize, image_hw

# torchvision 0.29 warns on every decode that TorchCodec will take over decoding; its decoders are the
# fastest available here (about 4x PIL on small JPEGs) and the pinned version keeps them.
warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities", category=DeprecationWarning)

# PIL's own limit (about 89 megapixels): larger images are refused rather than decoded.
MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485
MAX_FILE_BYTES = 64 * 2**20  # no single image file needs more; bounds what a special or huge file can cost

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif")


class ImageError(Exception):
    """A file that cannot be read as an image; the message names the file and the reason."""


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def _decode_with_pil(data: bytes) -> torch.Tensor:
    # PIL covers what torchvision's decoders do not (TIFF, BMP, CMYK, 16-bit, palette with alpha).
    with Image.open(io.BytesIO(data)) as im:
        rgb = np.asarray(im.convert("RGB"))
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1)  # (3, H, W)


def pixel_count(data: bytes) -> int | None:
    """Width x height as the file's header declares it, without decoding; None where PIL does not know the format.

    Read for every file, whatever its size: a PNG of a few dozen bytes or a JPEG of a few hundred can declare
    billions of pixels (a decompression bomb).
    """
    # PNG and GIF state their size at a fixed place: read it there, even when the rest of the file is garbage.
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        w, h = struct.unpack(">II", data[16:24])
        return w * h
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        w, h = struct.unpack("<HH", data[6:10])
        return w * h
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:  # reads the header only
                w, h = im.size
    except Image.DecompressionBombError as e:  # PIL refuses at open what declares over twice its limit
        found = re.search(r"\((\d+) pixels\)", str(e))
        return int(found.group(1)) if found else MAX_PIXELS + 1
    except Exception:  # not an image PIL knows (or a header it cannot parse): decoding will say so
        return None
    return w * h


def display_path(path: Path) -> str:
    """A file name fit for any output: bytes that are not UTF-8 shown as \\x.. escapes instead of failing."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def read_file(path: Path, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file (links resolved), at most ``limit``; raises ImageError naming the file.

    Opened without blocking and checked on the open descriptor: a FIFO, a device such as /dev/zero or a folder
    is refused at once instead of hanging or being read until memory runs out.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as e:
        raise ImageError(f"{display_path(path)}: cannot be read ({e.strerror or e})") from None
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = "a folder" if stat.S_ISDIR(mode) else "a pipe" if stat.S_ISFIFO(mode) else "a device or socket"
            raise ImageError(f"{display_path(path)}: not a regular file ({kind})")
        try:
            data = f.read(limit + 1)
        except OSError as e:
            raise ImageError(f"{display_path(path)}: cannot be read ({e.strerror or e})") from None
    if len(data) > limit:
        raise ImageError(f"{display_path(path)}: over the {limit // 2**20} MiB limit for one image file")
    return data


def decode_rgb(path: Path) -> torch.Tensor:
    """The image at ``path`` as a (3, H, W) uint8 tensor; raises ImageError naming the file."""
    return decode_bytes(read_file(path), display_path(path))


def decode_bytes(data: bytes, name: str) -> torch.Tensor:
    """An image file's bytes (from disk or an upload) as a (3, H, W) uint8 tensor; raises ImageError naming it."""
    if not data:
        raise ImageError(f"{name}: empty file (0 bytes)")
    pixels = pixel_count(data)
    if pixels is not None and pixels > MAX_PIXELS:
        raise ImageError(f"{name}: {pixels:,} pixels is over the decompression-bomb limit of {MAX_PIXELS:,}")
    try:
        img = decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
        if img.dtype != torch.uint8:  # 16-bit PNGs decode as uint16
            img = TF.to_dtype(img, torch.uint8, scale=True)
    except (RuntimeError, ValueError):
        try:
            img = _decode_with_pil(data)
        except Exception as e:  # PIL raises many types (UnidentifiedImageError, OSError, DecompressionBomb...)
            raise ImageError(f"{name}: not a readable image ({type(e).__name__}: {e})") from None
    return img


def fit_image(img: torch.Tensor, size: ImageSize) -> torch.Tensor:
    """(..., H, W) -> (..., height, width): the largest centred region of the target's aspect ratio, resized (timm's
    eval transform: for a square size, the shorter side to ``size`` and a centre crop). Cropping before resizing
    bounds the work by the output: a 1 x 3,000,000 strip is not first stretched to 32 x 96,000,000."""
    h, w = image_hw(size)
    H, W = img.shape[-2:]
    if (H, W) == (h, w):
        return img
    crop_h, crop_w = min(H, max(1, round(W * h / w))), min(W, max(1, round(H * w / h)))
    img = TF.center_crop(img, [crop_h, crop_w])
    return TF.resize(img, [h, w], antialias=True)


def read_image(path: Path, size: ImageSize) -> torch.Tensor:
    """(3, height, width) uint8 RGB from any image file; any failure is an ImageError naming the file."""
    img = decode_rgb(Path(path))
    try:
        return fit_image(img, size)
    except (RuntimeError, ValueError, MemoryError) as e:
        raise ImageError(f"{display_path(path)}: cannot be resized ({type(e).__name__}: {e})") from None
