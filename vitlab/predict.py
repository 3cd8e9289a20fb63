"""Classify image files and folders with a checkpoint; write a competition-style CSV."""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

import torch

from vitlab.data.augment import BatchTransform
from vitlab.data.folder import list_images
from vitlab.data.images import ImageError, read_image
from vitlab.errors import VitlabError
from vitlab.io import atomic_write_text
from vitlab.train.checkpoint import load_checkpoint
from vitlab.train.evaluate import predict_logits
from vitlab.train.step import infer_chunk_size


def collect_images(paths: list[str]) -> list[Path]:
    """Named files as given, plus every image file under named folders (sorted, recursive)."""
    files: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            files += list_images(p)
        elif p.is_file() or p.is_symlink():
            files.append(p)
        else:
            raise VitlabError(f"{p}: no such file or folder")
    return files


def predict(
    checkpoint: str | Path,
    paths: list[str],
    *,
    out: str | Path | None = None,
    top_k: int = 1,
    batch_size: int = 0,
    device: str = "cpu",
    tta: str | None = None,
) -> list[dict]:
    """One row per readable image: path, label, confidence, the next ``top_k - 1`` guesses, every probability.

    ``tta``: test-time augmentation (none, flip, full); None: the checkpoint's ``train.tta``."""
    model, meta = load_checkpoint(checkpoint, device)
    classes: list[str] = meta["classes"]
    if not 1 <= top_k <= len(classes):
        raise VitlabError(f"--top-k: expected 1 to {len(classes)} (the number of classes), got {top_k}")
    size = meta["config"].model.img_size
    files = collect_images(paths)
    if not files:
        raise VitlabError(f"no image files found in {' '.join(paths)}")
    images, kept = [], []
    for f in files:
        try:
            images.append(read_image(f, size))
            kept.append(f)
        except ImageError as e:
            print(f"vitlab: skipped {e}", file=sys.stderr)
    if not images:
        raise VitlabError(f"none of the {len(files)} files could be read as an image")
    transform = BatchTransform(meta["mean"], meta["std"], size, device=device)
    dev = torch.device(device)
    tta = tta or meta["config"].train.tta
    probs = predict_logits(model, torch.stack(images), transform, infer_chunk_size(batch_size, dev), dev, tta).softmax(1)
    conf, top = probs.topk(top_k, dim=1)

    header = ["path", "label", "confidence"]
    for k in range(2, top_k + 1):
        header += [f"label_{k}", f"confidence_{k}"]
    header += classes
    rows = []
    for i, f in enumerate(kept):
        row = {"path": str(f), "label": classes[top[i, 0]], "confidence": f"{conf[i, 0].item():.6f}"}
        for k in range(1, top_k):
            row[f"label_{k + 1}"] = classes[top[i, k]]
            row[f"confidence_{k + 1}"] = f"{conf[i, k].item():.6f}"
        row.update({c: f"{p:.6f}" for c, p in zip(classes, probs[i].tolist())})
        rows.append(row)

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header)
    writer.writeheader()
    writer.writerows(rows)
    if out is None:
        sys.stdout.write(buf.getvalue())
    else:
        atomic_write_text(buf.getvalue(), Path(out))
        print(f"wrote {len(rows)} predictions to {out} ({len(files) - len(rows)} files skipped)", file=sys.stderr)
    return rows
