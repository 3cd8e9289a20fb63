"""One entry point for every data source: uint8 splits in memory, a validation hold-out, normalisation stats."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch

from vitlab.config import DataConfig
from vitlab.data.cifar import DATASETS, load_cifar
from vitlab.data.folder import load_image_folder
from vitlab.data.splits import stratified_holdout


@dataclass
class Split:
    images: torch.Tensor  # (N, 3, H, W) uint8
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


def cache_dir(cfg: DataConfig) -> Path:
    return Path(cfg.cache_dir or os.environ.get("VITLAB_CACHE") or Path.home() / ".cache" / "vitlab").expanduser()


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images scaled to [0, 1], in chunks to bound memory."""
    total = torch.zeros(images.shape[1], dtype=torch.float64)
    total_sq = torch.zeros_like(total)
    for chunk in images.split(4096):
        x = chunk.to(torch.float64) / 255
        total += x.sum((0, 2, 3))
        total_sq += (x * x).sum((0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    std = (total_sq / count - mean**2).clamp_min(1e-12).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


def load_data(cfg: DataConfig, img_size: int, seed: int, *, verbose: bool = True) -> ImageData:
    """Load ``cfg.source`` (cifar10, cifar100 or an ImageFolder path) into memory as uint8 tensors.

    Validation comes from the folder's own ``val/`` when present, else a stratified, seeded hold-out of
    ``val_fraction`` of train (at most ``val_max`` images). The test split is only for the final number.
    """
    start = time.perf_counter()
    if cfg.source in DATASETS:
        raw = load_cifar(cfg.source, cache_dir(cfg))
    else:
        raw = load_image_folder(Path(cfg.source), img_size, cache_dir(cfg), strict=cfg.strict)
    splits = raw["splits"]
    train = Split(*splits["train"])
    val, val_source = None, "none"
    if "val" in splits:
        val, val_source = Split(*splits["val"]), "val/ folder"
    elif cfg.val_fraction > 0:
        keep, held = stratified_holdout(train.labels, cfg.val_fraction, cfg.val_max, seed)
        val, val_source = Split(train.images[held], train.labels[held]), "held out from train"
        train = Split(train.images[keep], train.labels[keep])
    mean, std = channel_stats(train.images)
    if cfg.mean is not None and cfg.std is not None:  # e.g. the normalisation pretrained weights were trained with
        mean, std = tuple(cfg.mean), tuple(cfg.std)
    data = ImageData(
        classes=raw["classes"], train=train, test=Split(*splits["test"]), val=val,
        mean=mean, std=std, skipped=raw["skipped"], val_source=val_source,
    )
    if verbose:
        print(
            f"data: {cfg.source}: {len(data.classes)} classes, train {len(train)}, "
            f"val {len(val) if val else 0} ({val_source}), test {len(data.test)} "
            f"[{time.perf_counter() - start:.1f}s]"
        )
        if data.skipped:
            print(f"data: skipped {len(data.skipped)} unreadable files:")
            for msg in data.skipped[:20]:
                print(f"  {msg}")
            if len(data.skipped) > 20:
                print(f"  ... and {len(data.skipped) - 20} more")
    return data


def epoch_order(
    n: int, *, generator: torch.Generator | None = None, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """The order of one epoch over ``n`` items: as stored without a generator, shuffled with one, or drawn
    with replacement in proportion to ``weights`` (class balancing)."""
    if weights is not None:
        return torch.multinomial(weights, n, replacement=True, generator=generator)
    if generator is not None:
        return torch.randperm(n, generator=generator)
    return torch.arange(n)


def balanced_weights(labels: torch.Tensor) -> torch.Tensor:
    """1 / class size for every item, as the seed's ``make_weights`` for its WeightedRandomSampler."""
    counts = torch.bincount(labels).double()
    return 1.0 / counts[labels]
