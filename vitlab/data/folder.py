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
from vitlab.data.stream import FileImages, default_workers, scan_files
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


def stored_size(files: list[Path], size: int, samples: int = 64) -> int:
    """The size to decode at: ``size``, or less when the images themselves are smaller (CIFAR's 32 px for a
    224-px fine-tuning): upsampled copies would only fill memory, the device resizes each batch instead.
    Judged from the headers of up to ``samples`` evenly spaced files."""
    from PIL import Image

    step = max(1, len(files) // samples)
    largest = 0
    for f in files[::step][:samples]:
        try:
            with Image.open(f) as im:
                largest = max(largest, min(im.size))
        except Exception:  # unreadable files are reported when decoded
            continue
    return min(size, largest) if largest else size


def physical_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def load_image_folder(root: Path, size: int, cache_dir: Path, *, strict: bool, storage: str = "auto",
                      memory_share: float = 0.5, workers: int = 0) -> dict:
    """``{"classes", "splits": {name: (images, labels)}, "skipped", "storage"}`` for an ImageFolder root.

    ``storage`` "memory": the images decoded once into uint8 tensors, cached under ``cache_dir`` (keyed by the
    root's path, the size and every file's size and mtime), so a second run starts in seconds. "disk": the
    images stay on disk (``FileImages``), decoded batch by batch in DataLoader workers; only the list of
    readable files and their channel sums are cached. "auto": memory unless the decoded images would take more
    than ``memory_share`` of the machine's RAM.
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

    size = stored_size(files_train, size)
    if storage == "auto":
        decoded = sum(len(files) for files, _ in listing.values()) * 3 * size * size
        storage = "disk" if decoded > memory_share * physical_memory() else "memory"
    key = _fingerprint(root, size, {k: v[0] for k, v in listing.items()})
    if storage == "disk":
        return _file_index(root, size, listing, classes, cache_dir / "folders" / f"{root.resolve().name}-{size}px-{key}.index.pt",
                           strict=strict, workers=workers)
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
    return {**data, "storage": "memory"}


def _file_index(root: Path, size: int, listing: dict, classes: list[str], index_file: Path, *, strict: bool,
                workers: int) -> dict:
    """The streamed form: per split the readable files (``FileImages``) and labels; the scan is cached."""
    index = None
    if index_file.is_file():
        try:
            index = safe_torch_load(index_file)
        except VitlabError as e:
            print(f"vitlab: rebuilding the data index ({e})")
    if index is None:
        index = {"splits": {}, "skipped": []}
        for name, (files, labels) in listing.items():
            kept, bad, sums, squares = scan_files(files, size, workers or default_workers(), f"scanning {root.name}/{name}")
            if bad and strict:
                raise VitlabError(f"{bad[0]} (data.strict is on)")
            index["splits"][name] = ([str(files[i].relative_to(root)) for i in kept],
                                     torch.tensor(labels, dtype=torch.long)[kept], sums, squares)
            index["skipped"] += bad
        atomic_torch_save(index, index_file)
    splits = {name: (FileImages([root / f for f in rel], size, sums, squares, workers), labels)
              for name, (rel, labels, sums, squares) in index["splits"].items()}
    return {"classes": classes, "splits": splits, "skipped": index["skipped"], "storage": "disk"}
