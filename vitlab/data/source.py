"""What data sources give: one small protocol for a split's uint8 images, wherever they are kept (a tensor in
memory or files on disk), and ``SourceData``, what a source hands to ``load_data``.

The loader, the normalisation statistics and the report's sample pictures ask only for what this protocol
offers, so neither needs to know which storage a dataset chose. ``FileImages`` (vitlab/data/stream.py)
implements it for images decoded from disk; ``TensorImages`` wraps an in-memory (N, 3, H, W) uint8 tensor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Protocol, Sequence

import torch

from vitlab.data.stream import FileImages, image_channel_sums


class ImageSource(Protocol):
    def __len__(self) -> int: ...

    def gather(self, idx: torch.Tensor) -> torch.Tensor:
        """The images at ``idx`` as one (n, 3, H, W) uint8 tensor."""
        ...

    def batches(self, batches: Sequence[torch.Tensor], device: torch.device) -> Iterator[torch.Tensor]:
        """The uint8 batches at ``batches`` (index tensors), in order, on ``device``."""
        ...

    def channel_sums(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per image and channel, the sum of pixel values in [0, 1] and of their squares: (N, C) float64 each."""
        ...

    def placed(self, device: torch.device, memory_share: float) -> ImageSource:
        """These images where training batches are gathered from (see ``TensorImages.placed``)."""
        ...


class TensorImages:
    """An in-memory (N, 3, H, W) uint8 tensor as an ``ImageSource``."""

    def __init__(self, images: torch.Tensor):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def gather(self, idx: torch.Tensor) -> torch.Tensor:
        return self.images[idx.to(self.images.device)]

    def batches(self, batches: Sequence[torch.Tensor], device: torch.device) -> Iterator[torch.Tensor]:
        for idx in batches:
            yield self.images[idx.to(self.images.device, non_blocking=True)].to(device, non_blocking=True)

    def channel_sums(self) -> tuple[torch.Tensor, torch.Tensor]:
        parts = [image_channel_sums(chunk) for chunk in self.images.split(4096)]  # chunked: float64 is 8x uint8
        return torch.cat([a for a, _ in parts]), torch.cat([b for _, b in parts])

    def placed(self, device: torch.device, memory_share: float) -> TensorImages:
        """On the device when the images fit in ``memory_share`` of its memory (GPU-resident, no transfers), else
        in pinned host memory (each batch copied asynchronously)."""
        if device.type != "cuda":
            return TensorImages(self.images.to(device))
        if self.images.nbytes > memory_share * torch.cuda.get_device_properties(device).total_memory:
            print(
                f"data: {self.images.nbytes / 1e9:.1f} GB of images kept in pinned host memory (over "
                f"data.memory_share={memory_share:g} of the GPU's); batches are copied as they are used"
            )
            return TensorImages(self.images.pin_memory())
        return TensorImages(self.images.to(device))


def image_source(images: torch.Tensor | FileImages) -> ImageSource:
    """The ``ImageSource`` of a split's ``images`` field (the one place that tells the storages apart)."""
    return TensorImages(images) if isinstance(images, torch.Tensor) else images


@dataclass
class SourceData:
    """What a data source (CIFAR through torchvision, an ImageFolder) gives ``load_data``: class names, per split
    name ("train", "test", optionally "val") its uint8 images and int64 labels, the files it skipped, and where
    the images are kept ("memory" or "disk")."""

    classes: list[str]
    splits: dict[str, tuple[torch.Tensor | FileImages, torch.Tensor]]
    skipped: list[str] = field(default_factory=list)
    storage: str = "memory"
