"""CIFAR-10/100 through torchvision, held as uint8 tensors."""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision

from vitlab.data.source import SourceData
from vitlab.errors import VitlabError

DATASETS = {"cifar10": torchvision.datasets.CIFAR10, "cifar100": torchvision.datasets.CIFAR100}


def _open(name: str, root: Path, train: bool):
    cls = DATASETS[name]
    try:
        return cls(root=str(root), train=train, download=False)
    except RuntimeError:
        pass  # not in the cache yet: try to download it
    try:
        return cls(root=str(root), train=train, download=True)
    except Exception as e:  # URLError, socket errors, HTTP errors: all mean "not reachable"
        raise VitlabError(
            f"not found in {root} and the download failed ({type(e).__name__}); when offline, use a local "
            "ImageFolder copy with train/ and test/ instead, e.g. ../shared/datasets/cifar10-jpeg",
            field="data.source",
            value=name,
        ) from None


def load_cifar(name: str, cache_dir: Path) -> SourceData:
    """Classes and uint8 (N, 3, 32, 32) train and test splits."""
    root = cache_dir / "torchvision"
    splits = {}
    classes: list[str] = []
    for split, train in (("train", True), ("test", False)):
        ds = _open(name, root, train)
        images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # (N, 32, 32, 3) -> (N, 3, 32, 32)
        splits[split] = (images, torch.tensor(ds.targets, dtype=torch.long))
        classes = list(ds.classes)
    return SourceData(classes, splits)
