"""ImageFolder roots (``train/<class>/*.jpg``, ``test/...``, optional ``val/...``), decoded once into a uint8 cache."""

from __future__ import annotations

import hashlib
import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from vitlab.config import ImageSize, image_hw, parse_image_size, size_label
from vitlab.data.images import ImageError, display_path, is_image_file, read_image
from vitlab.data.source import SourceData
from vitlab.data.stream import FileImages, default_workers, scan_files
from vitlab.errors import VitlabError
from vitlab.io import atomic_torch_save, safe_torch_load

CACHE_VERSION = 2  # 2: images cropped to the aspect ratio before resizing; rectangular sizes


def list_images(folder: Path) -> list[Path]:
    """Image files under ``folder``, recursively and sorted; broken links and symlink loops are left out
    here and reported when decoded (they are not regular files)."""
    return sorted(p for p in folder.rglob("*") if is_image_file(p) and not p.is_dir())


def scan_split(split_dir: Path, classes: list[str] | None = None) -> tuple[list[Path], list[int], list[str]]:
    """Image files and labels of one split. ``classes`` fixes the label order (taken from train/)."""
    if not split_dir.is_dir():
        raise VitlabError(
            f"expected a folder {split_dir.name}/ with one sub-folder per class",
            field="data.source",
            value=split_dir.parent,
        )
    found = sorted(d.name for d in split_dir.iterdir() if d.is_dir())
    for name in found:
        if display_path(Path(name)) != name:  # class names go into JSON, HTML and CSV files as text
            raise VitlabError(
                f"{split_dir / display_path(Path(name))}: a class folder name that is not valid UTF-8; "
                "rename the folder"
            )
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
    files: list[Path], size: ImageSize, *, strict: bool, desc: str
) -> tuple[torch.Tensor, list[int], list[str]]:
    """Decode ``files`` into (N, 3, height, width) uint8; returns images, indices kept, and skip messages."""

    def load(path: Path) -> torch.Tensor | str:
        try:
            return read_image(path, size)
        except ImageError as e:
            if strict:
                raise VitlabError(f"{e} (data.strict is on)") from None
            return str(e)

    out = torch.empty((len(files), 3, *image_hw(size)), dtype=torch.uint8)
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


def _fingerprint(root: Path, size: ImageSize, splits: dict[str, list[Path]]) -> str:
    h = hashlib.sha256(json.dumps([CACHE_VERSION, str(root.resolve()), size]).encode())
    for name, files in splits.items():
        h.update(name.encode())
        for f in files:
            try:
                st = f.stat()
                stamp = f"{st.st_size}\0{st.st_mtime_ns}"
            except OSError:  # a broken link or a symlink loop: decoding reports it
                stamp = "unreadable"
            h.update(os.fsencode(f.relative_to(root)) + f"\0{stamp}\n".encode())
    return h.hexdigest()[:16]


def stored_size(files: list[Path], size: ImageSize, samples: int = 64) -> ImageSize:
    """The size to decode at: ``size``, or less (same aspect ratio) when the images themselves are smaller
    (CIFAR's 32 px for a 224-px fine-tuning): upsampled copies would only fill memory, the device resizes each
    batch instead. Judged from the headers of up to ``samples`` evenly spaced files: the largest scale at which
    the target fits inside an image (its crop to the target's aspect ratio)."""
    from PIL import Image

    h, w = image_hw(size)
    step = max(1, len(files) // samples)
    scale = 0.0
    for f in files[::step][:samples]:
        try:
            if not f.is_file():  # FIFOs and devices would block or never end: decoding reports them
                continue
            with Image.open(f) as im:
                scale = max(scale, min(im.height / h, im.width / w))
        except Exception:  # unreadable files are reported when decoded
            continue
    if not scale or scale >= 1:
        return size
    return parse_image_size([max(1, round(h * scale)), max(1, round(w * scale))], "data size")


def physical_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def load_image_folder(
    root: Path,
    size: ImageSize,
    cache_dir: Path,
    *,
    strict: bool,
    storage: str = "auto",
    memory_share: float = 0.5,
    workers: int = 0,
) -> SourceData:
    """The classes, splits (train, test, val when present), skipped files and storage of an ImageFolder root.

    ``storage`` "memory": the images decoded once into uint8 tensors, cached under ``cache_dir`` (keyed by the
    root's path, the size and every file's size and mtime), so a second run starts in seconds. "disk": the
    images stay on disk (``FileImages``), decoded batch by batch in DataLoader workers; only the list of
    readable files and their channel sums are cached. "auto": memory unless the decoded images would take more
    than ``memory_share`` of the machine's RAM.
    """
    if not root.is_dir():
        raise VitlabError(
            "folder not found (expected an ImageFolder root with train/ and test/)", field="data.source", value=root
        )
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
        decoded = sum(len(files) for files, _ in listing.values()) * 3 * math.prod(image_hw(size))
        storage = "disk" if decoded > memory_share * physical_memory() else "memory"
    key = _fingerprint(root, size, {k: v[0] for k, v in listing.items()})
    if storage == "disk":
        return _file_index(
            root,
            size,
            listing,
            classes,
            cache_dir / "folders" / f"{root.resolve().name}-{size_label(size)}px-{key}.index.pt",
            strict=strict,
            workers=workers,
        )
    cache_file = cache_dir / "folders" / f"{root.resolve().name}-{size_label(size)}px-{key}.pt"
    cached = _read_cache(cache_file, list(listing), len(classes), (3, *image_hw(size)))
    if cached is not None:
        return SourceData(classes, cached["splits"], cached["skipped"], "memory")

    splits, skipped = {}, []
    for name, (files, labels) in listing.items():
        images, kept, bad = decode_files(files, size, strict=strict, desc=f"decoding {root.name}/{name}")
        splits[name] = (images, torch.tensor(labels, dtype=torch.long)[kept])
        skipped += bad
    _write_cache({"classes": classes, "splits": splits, "skipped": skipped, "checksum": _digest(splits)}, cache_file)
    return SourceData(classes, splits, skipped, "memory")


def _digest(splits: dict[str, tuple]) -> str:
    """SHA-256 of every split's tensors (their bytes, dtype and shape) and file lists: a cache whose pixels were
    altered or damaged no longer matches."""
    h = hashlib.sha256()
    for name in sorted(splits):
        h.update(name.encode())
        for part in splits[name]:
            if isinstance(part, torch.Tensor):
                h.update(f"{part.dtype}{tuple(part.shape)}".encode())
                h.update(part.contiguous().view(torch.uint8).numpy())
            else:
                h.update("\0".join(part).encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def _check_split(name: str, parts: Any, n_classes: int, image_shape: tuple[int, ...] | None) -> None:
    """A cached split: (images uint8 (N, *image_shape), labels) in memory, or (files, labels, sums, squares)."""
    if not isinstance(parts, tuple) or len(parts) != (2 if image_shape else 4):
        raise VitlabError(f"split {name} has an unexpected structure")
    first, labels = parts[0], parts[1]
    if not (
        isinstance(labels, torch.Tensor)
        and labels.dtype == torch.long
        and labels.ndim == 1
        and len(first) == len(labels)
        and (len(labels) == 0 or (labels.min() >= 0 and labels.max() < n_classes))
    ):
        raise VitlabError(f"split {name}: labels do not fit")
    if image_shape:
        if not (
            isinstance(first, torch.Tensor) and first.dtype == torch.uint8 and tuple(first.shape[1:]) == image_shape
        ):
            raise VitlabError(f"split {name}: images of an unexpected type or shape")
        return
    safe = all(isinstance(f, str) and not Path(f).is_absolute() and ".." not in Path(f).parts for f in first)
    stats_ok = all(
        isinstance(t, torch.Tensor) and t.dtype == torch.float64 and tuple(t.shape) == (len(first), 3)
        for t in parts[2:]
    )
    if not (isinstance(first, list) and safe and stats_ok):
        raise VitlabError(f"split {name}: file list or channel sums of an unexpected form")


def _read_cache(path: Path, names: list[str], n_classes: int, image_shape: tuple[int, ...] | None) -> dict | None:
    """A cache file's contents when its structure and checksum are right; None (it will be rebuilt) otherwise."""
    if not path.is_file():
        return None
    try:
        data = safe_torch_load(path)
        if not (
            isinstance(data, dict)
            and isinstance(data.get("splits"), dict)
            and set(data["splits"]) == set(names)
            and isinstance(data.get("skipped"), list)
        ):
            raise VitlabError("unexpected structure")
        for name, parts in data["splits"].items():
            _check_split(name, parts, n_classes, image_shape)
        if data.get("checksum") != _digest(data["splits"]):
            raise VitlabError("checksum mismatch: the file was altered or damaged")
        return data
    except (VitlabError, TypeError, ValueError, RuntimeError) as e:  # whatever a damaged or crafted file leads to
        print(f"vitlab: rebuilding the data cache {path.name} ({e})")
        return None


def _write_cache(data: dict, path: Path) -> None:
    """Save a cache; a folder that cannot be written costs the next run the decoding time, nothing more."""
    try:
        atomic_torch_save(data, path)
    except OSError as e:
        print(
            f"vitlab: warning: could not write the data cache {path} ({e.strerror or e}); "
            "set data.cache_dir or $VITLAB_CACHE to a writable folder to reuse decoded images"
        )


def _file_index(
    root: Path, size: ImageSize, listing: dict, classes: list[str], index_file: Path, *, strict: bool, workers: int
) -> SourceData:
    """The streamed form: per split the readable files (``FileImages``) and labels; the scan is cached."""
    index = _read_cache(index_file, list(listing), len(classes), None)
    if index is None:
        index = {"splits": {}, "skipped": []}
        for name, (files, labels) in listing.items():
            kept, bad, sums, squares = scan_files(
                files, size, workers or default_workers(), f"scanning {root.name}/{name}"
            )
            if bad and strict:
                raise VitlabError(f"{bad[0]} (data.strict is on)")
            index["splits"][name] = (
                [str(files[i].relative_to(root)) for i in kept],
                torch.tensor(labels, dtype=torch.long)[kept],
                sums,
                squares,
            )
            index["skipped"] += bad
        _write_cache({**index, "checksum": _digest(index["splits"])}, index_file)
    splits = {
        name: (FileImages([root / f for f in rel], size, sums, squares, workers), labels)
        for name, (rel, labels, sums, squares) in index["splits"].items()
    }
    return SourceData(classes, splits, index["skipped"], "disk")
