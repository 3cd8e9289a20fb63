"""One entry point for every data source: uint8 splits in memory, a validation hold-out, normalisation stats."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch

from vitlab.config import DataConfig, ImageSize, size_label
from vitlab.data.cifar import DATASETS, load_cifar
from vitlab.data.folder import load_image_folder
from vitlab.data.splits import stratified_holdout
from vitlab.data.source import image_source
from vitlab.data.stream import FileImages


@dataclass
class Split:
    images: torch.Tensor | FileImages  # (N, 3, H, W) uint8, in memory or streamed from disk
    labels: torch.Tensor  # (N,) int64

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class ImageData:
    classes: list[str]
    train: Split
    test: Split
    val: Optional[Split] = None
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)
    skipped: list[str] = field(default_factory=list)
    val_source: str = "none"  # "val/ folder", "held out from train" or "none"
    storage: str = "memory"  # "memory" (uint8 tensors) or "disk" (FileImages, decoded by DataLoader workers)


def cache_dir(cfg: DataConfig) -> Path:
    return Path(cfg.cache_dir or os.environ.get("VITLAB_CACHE") or Path.home() / ".cache" / "vitlab").expanduser()


def channel_stats(images: torch.Tensor | FileImages) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images scaled to [0, 1], from per-image sums (chunked in memory;
    recorded by the scan for images on disk), so both storage paths get the same numbers."""
    sums, squares = image_source(images).channel_sums()
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = sums.sum(0) / count
    std = (squares.sum(0) / count - mean**2).clamp_min(1e-12).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


def load_data(cfg: DataConfig, img_size: ImageSize, seed: int, *, verbose: bool = True) -> ImageData:
    """Load ``cfg.source`` (cifar10, cifar100 or an ImageFolder path) into memory as uint8 tensors.

    Validation comes from the folder's own ``val/`` when present, else a stratified, seeded hold-out of
    ``val_fraction`` of train (at most ``val_max`` images). The test split is only for the final number.
    """
    start = time.perf_counter()
    if cfg.source in DATASETS:
        raw = load_cifar(cfg.source, cache_dir(cfg))
    else:
        raw = load_image_folder(
            Path(cfg.source),
            img_size,
            cache_dir(cfg),
            strict=cfg.strict,
            storage=cfg.storage,
            memory_share=cfg.memory_share,
            workers=cfg.workers,
        )
    splits = raw.splits
    train = Split(*splits["train"])
    val, val_source = None, "none"
    if "val" in splits:
        val, val_source = Split(*splits["val"]), "val/ folder"
    elif cfg.val_fraction > 0:
        keep, held = stratified_holdout(train.labels, cfg.val_fraction, cfg.val_max, seed)
        if len(held):
            val, val_source = Split(train.images[held], train.labels[held]), "held out from train"
            train = Split(train.images[keep], train.labels[keep])
        else:  # data.val_max=0, or too few images per class to hold any out: train without validation
            val_source = "none: the hold-out would be empty (data.val_max, or too few images per class)"
    mean, std = channel_stats(train.images)
    if cfg.mean is not None and cfg.std is not None:  # e.g. the normalisation pretrained weights were trained with
        mean, std = tuple(cfg.mean), tuple(cfg.std)
    data = ImageData(
        classes=raw.classes,
        train=train,
        test=Split(*splits["test"]),
        val=val,
        mean=mean,
        std=std,
        skipped=raw.skipped,
        val_source=val_source,
        storage=raw.storage,
    )
    if verbose:
        print(
            f"data: {cfg.source}: {len(data.classes)} classes, train {len(train)}, "
            f"val {len(val) if val else 0} ({val_source}), test {len(data.test)} "
            f"[{time.perf_counter() - start:.1f}s]"
        )
        print(f"data: {_storage_text(data, cfg)}")
        if data.skipped:
            print(f"data: skipped {len(data.skipped)} unreadable files:")
            for msg in data.skipped[:20]:
                print(f"  {msg}")
            if len(data.skipped) > 20:
                print(f"  ... and {len(data.skipped) - 20} more")
    return data


def _storage_text(data: ImageData, cfg: DataConfig) -> str:
    splits = [data.train, data.test] + ([data.val] if data.val is not None else [])
    height, width = data.train.images.shape[-2:]
    size = size_label([height, width])
    mb = sum(s.images.shape[0] for s in splits) * 3 * height * width / 1e6
    if data.storage == "disk":
        workers = data.train.images.workers
        why = (
            "data.storage=disk"
            if cfg.storage == "disk"
            else f"decoded, {mb:,.0f} MB would exceed data.memory_share={cfg.memory_share:g} of the RAM"
        )
        return f"streamed from disk, decoded at {size} px by {workers} DataLoader worker processes ({why})"
    return f"held in memory as uint8 at {size} px ({mb:,.0f} MB), augmented in batches on the device"
