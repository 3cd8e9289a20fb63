"""ImageFolder roots (``train/<class>/*.jpg``, ``test/...``, optional ``val/...``), decoded once into a uint8 cache."""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from tqdm import tqdm

from vitlab.data.images import ImageError, is_image_file, read_image
from vitlab.errors import VitlabError
from vitlab.io import atomic_torch_save, safe_torch_load

CACHE_VERSION = 1


def list_images(folder: Path) -> list[Path]:
    """Image files under ``folder``, recursively and sorted; broken links and symlink loops are left out
    here and reported when decoded (they are not regular files)."""
    return sorted(p for p in folder.rglob("*") if is_image_file(p) and not p.is_dir())


def scan_split(split_dir: Path, classes: list[str] | None = None) -> tuple[list[Path], list[int], list[str]]:
    """Image files and labels of one split. ``classes`` fixes the label order (taken from train/)."""
    if not split_dir.is_dir():
        raise VitlabError(f"--data {split_dir.parent}: expected a folder {split_dir.name}/ with one sub-folder per class")
    found = sorted(d.name for d in split_dir.iterdir() if d.is_dir())
    if not found:
        raise VitlabError(f"{split_dir}: no class sub-folders (expected {split_dir}/<class>/<image files>)")
    if classes is None:
        classes = found
    unknown = [c for c in found if c not in classes]
    if unknown:
        raise VitlabError(f"{split_dir}: classes {unknown} are not among the training classes {classes}")
    files: list[Path] = []
    labels: list[int] = []
    for name in found:
        images = list_images(split_dir / name)
        if not images:
            raise VitlabError(f"{split_dir / name}: class folder holds no image files")
        files += images
        labels += [classes.index(name)] * len(images)
    return files, labels, classes


def decode_files(
    files: list[Path], size: int, *, strict: bool, desc: str
) -> tuple[torch.Tensor, list[int], list[str]]:
    """Decode ``files`` into (N, 3, size, size) uint8; returns images, indices kept, and skip messages."""
    def load(path: Path) -> torch.Tensor | str:
        try:
            return read_image(path, size)
        except ImageError as e:
            if strict:
                raise VitlabError(f"{e} (data.strict is on)") from None
            return str(e)

    out = torch.empty((len(files), 3, size, size), dtype=torch.uint8)
    kept: list[int] = []
    skipped: list[str] = []
    # Threads overlap file reads with decoding; torchvision's decoders release the GIL.
    with ThreadPoolExecutor(max_workers=min(4, (os.cpu_count() or 1) + 1)) as pool:
        results = pool.map(load, files, chunksize=256)
        for i, res in enumerate(tqdm(results, total=len(files), desc=desc, unit="img", leave=False, disable=None)):
            if isinstance(res, str):
                skipped.append(res)
            else:
                out[len(kept)] = res
                kept.append(i)
    return out[: len(kept)].clone() if skipped else out, kept, skipped


def _fingerprint(root: Path, size: int, splits: dict[str, list[Path]]) -> str:
    h = hashlib.sha256(json.dumps([CACHE_VERSION, str(root.resolve()), size]).encode())
    for name, files in splits.items():
        h.update(name.encode())
        for f in files:
            try:
                st = f.stat()
                stamp = f"{st.st_size}\0{st.st_mtime_ns}"
            except OSError:  # a broken link or a symlink loop: decoding reports it
                stamp = "unreadable"
            h.update(f"{f.relative_to(root)}\0{stamp}\n".encode())
    return h.hexdigest()[:16]


def load_image_folder(root: Path, size: int, cache_dir: Path, *, strict: bool) -> dict:
    """``{"classes", "splits": {name: (images, labels)}, "skipped"}`` for an ImageFolder root.

    The decoded tensors are cached under ``cache_dir``, keyed by the root's path, the image size and every
    file's size and mtime, so a second run on unchanged data starts in seconds.
    """
    if not root.is_dir():
        raise VitlabError(f"--data {root}: folder not found (expected an ImageFolder root with train/ and test/)")
    files_train, labels_train, classes = scan_split(root / "train")
    if len(classes) < 2:
        raise VitlabError(f"{root / 'train'}: found one class ({classes[0]}); classification needs at least two")
    listing = {"train": (files_train, labels_train)}
    for name in ("val", "test"):
        if name == "test" or (root / name).is_dir():
            files, labels, _ = scan_split(root / name, classes)
            listing[name] = (files, labels)

    key = _fingerprint(root, size, {k: v[0] for k, v in listing.items()})
    cache_file = cache_dir / "folders" / f"{root.resolve().name}-{size}px-{key}.pt"
    if cache_file.is_file():
        try:
            return safe_torch_load(cache_file)
        except VitlabError as e:
            print(f"vitlab: rebuilding the data cache ({e})")

    splits, skipped = {}, []
    for name, (files, labels) in listing.items():
        images, kept, bad = decode_files(files, size, strict=strict, desc=f"decoding {root.name}/{name}")
        splits[name] = (images, torch.tensor(labels, dtype=torch.long)[kept])
        skipped += bad
    data = {"classes": classes, "splits": splits, "skipped": skipped}
    atomic_torch_save(data, cache_file)
    return data
