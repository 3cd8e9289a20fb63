"""Shared fixtures: the real CIFAR-10 JPEG copy (required, never skipped) and small subsets of it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CIFAR_ENV = "VITLAB_CIFAR10_JPEG"


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Decoded-data caches of the tests live in a temporary folder, never in the user's ~/.cache."""
    os.environ["VITLAB_CACHE"] = str(tmp_path_factory.mktemp("vitlab-cache"))


@pytest.fixture(scope="session")
def cifar_root() -> Path:
    root = Path(os.environ.get(CIFAR_ENV, REPO.parent / "shared" / "datasets" / "cifar10-jpeg"))
    if not (root / "train").is_dir() or not (root / "test").is_dir():
        pytest.fail(f"the CIFAR-10 JPEG copy is missing at {root} (set {CIFAR_ENV} to its path)")
    return root


def make_subset(src: Path, dst: Path, per_class: dict[str, int]) -> Path:
    """Copy the first N images of each class of each split: a small real ImageFolder."""
    for split, n in per_class.items():
        for class_dir in sorted((src / split).iterdir()):
            out = dst / split / class_dir.name
            out.mkdir(parents=True)
            for f in sorted(class_dir.iterdir())[:n]:
                shutil.copy(f, out / f.name)
    return dst


@pytest.fixture(scope="session")
def small_cifar(cifar_root, tmp_path_factory) -> Path:
    """40 training and 10 test images per class of the real CIFAR-10 copy."""
    return make_subset(cifar_root, tmp_path_factory.mktemp("small-cifar"), {"train": 40, "test": 10})
