"""Images left on disk and decoded batch by batch in DataLoader worker processes, for datasets larger than memory.

``FileImages`` stands in for the (N, 3, S, S) uint8 tensor of the in-memory path wherever vitlab uses one: it
has a length and a shape, an index tensor selects a subset (the validation hold-out), ``split(n)`` gives
sequential batches (evaluation), and it implements the ``ImageSource`` protocol the loader reads
(vitlab/data/source.py): ``batches`` gives the training batches in the epoch's order. Each image
goes through the same ``read_image`` as the in-memory cache, so both paths feed the model the same uint8
pixels, and the same batched augmentation on the device follows.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from vitlab.config import ImageSize, image_hw
from vitlab.data.images import ImageError, read_image


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


class _Files(Dataset):
    def __init__(self, files: Sequence[Path], size: ImageSize):
        self.files, self.size = files, size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        return read_image(self.files[i], self.size)


class _Scan(_Files):
    """Decode once to find unreadable files and each image's channel sums (for the normalisation)."""

    def __getitem__(self, i: int):
        try:
            img = read_image(self.files[i], self.size)
        except ImageError as e:
            return str(e)
        sums, squares = image_channel_sums(img[None])
        # Plain floats, not tensors: tensors would travel through shared memory, one open file each.
        return sums[0].tolist(), squares[0].tolist()


def image_channel_sums(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image and channel, the sum of pixel values in [0, 1] and of their squares: (B, C) float64 each.
    Both data paths compute the normalisation from these, so they agree to the last bit."""
    x = images.to(torch.float64) / 255
    return x.sum((2, 3)), (x * x).sum((2, 3))


def scan_files(files: Sequence[Path], size: ImageSize, workers: int, desc: str):
    """(kept indices, skip messages, channel sums (N, C), squared sums (N, C)) of ``files``, in worker processes."""
    from tqdm import tqdm

    loader = DataLoader(_Scan(files, size), batch_size=None, num_workers=workers, generator=torch.Generator())
    kept, skipped, sums, squares = [], [], [], []
    for i, res in enumerate(tqdm(loader, total=len(files), desc=desc, unit="img", leave=False, disable=None)):
        if isinstance(res, str):
            skipped.append(res)
        else:
            kept.append(i)
            sums.append(res[0])
            squares.append(res[1])
    return (
        kept,
        skipped,
        torch.tensor(sums, dtype=torch.float64).reshape(-1, 3),
        torch.tensor(squares, dtype=torch.float64).reshape(-1, 3),
    )


class FileImages:
    """The uint8 images of ``files`` at ``size``, decoded on demand by ``workers`` processes."""

    def __init__(
        self, files: Sequence[Path], size: ImageSize, sums: torch.Tensor, squares: torch.Tensor, workers: int = 0
    ):
        self.files = list(files)
        self.size = size
        self.sums, self.squares = sums, squares
        self.workers = workers or default_workers()

    def __len__(self) -> int:
        return len(self.files)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.files), 3, *image_hw(self.size))

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape)

    def __getitem__(self, idx: torch.Tensor) -> "FileImages":
        """The subset at ``idx`` (still on disk)."""
        idx = torch.as_tensor(idx)
        return FileImages(
            [self.files[i] for i in idx.tolist()], self.size, self.sums[idx], self.squares[idx], self.workers
        )

    def placed(self, device: torch.device, memory_share: float) -> "FileImages":
        return self  # the images stay on disk; each batch moves to the device when it is loaded

    def gather(self, idx: torch.Tensor) -> torch.Tensor:
        return self[idx].load()

    def channel_sums(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.sums, self.squares  # recorded by the scan

    def batches(self, batches: Sequence[torch.Tensor], device: torch.device) -> Iterator[torch.Tensor]:
        """The uint8 batches at ``batches`` (index tensors), in order, decoded ahead by the workers."""
        loader = DataLoader(
            _Files(self.files, self.size),
            batch_sampler=[b.tolist() for b in batches],
            num_workers=self.workers,
            pin_memory=device.type == "cuda",
            # Its own generator: the DataLoader draws its workers' seeds from it, not from the
            # global stream that dropout uses, so streaming leaves training's randomness alone.
            generator=torch.Generator(),
        )
        for batch in loader:
            yield batch.to(device, non_blocking=True)

    def load(self) -> torch.Tensor:
        """All the images as one (N, 3, H, W) uint8 tensor (for small subsets: figures, samples)."""
        return (
            torch.stack([read_image(f, self.size) for f in self.files])
            if self.files
            else torch.empty(self.shape, dtype=torch.uint8)
        )

    def split(self, batch_size: int) -> Iterator[torch.Tensor]:
        """Sequential uint8 batches on the CPU (evaluation)."""
        return self.batches(torch.arange(len(self)).split(batch_size), torch.device("cpu"))
