"""Classify image files and folders with a checkpoint; write a competition-style CSV."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from vitlab.data.folder import list_images
from vitlab.data.images import ImageError, display_path
from vitlab.errors import VitlabError
from vitlab.inference import Classifier
from vitlab.io import atomic_write_text, csv_text


def collect_images(paths: list[str]) -> list[Path]:
    """Named files as given, plus every image file under named folders (sorted, recursive)."""
    files: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            files += list_images(p)
        elif p.exists() or p.is_symlink():  # special files too: reading them says why they are skipped
            files.append(p)
        else:
            raise VitlabError(f"{p}: no such file or folder")
    return files


def refuse_overwriting_inputs(out: Path, inputs: list[Path]) -> None:
    """``out`` must not name the checkpoint or an image being read (links resolved)."""
    if out.is_dir():
        raise VitlabError("is a folder; expected a CSV file name", field="out", value=out)
    target = os.path.realpath(out)  # (unlike Path.resolve, never raises on a symlink loop)
    for p in inputs:
        if os.path.realpath(p) == target:
            raise VitlabError(f"is one of the inputs ({p}); choose another file name", field="out", value=out)


def read_images(clf: Classifier, files: list[Path]) -> tuple[torch.Tensor, list[Path]]:
    """The readable files as one uint8 batch at the model's size, and which files they are; the others are
    reported by name on stderr."""
    images, kept = [], []
    for f in files:
        try:
            images.append(clf.read(f))
            kept.append(f)
        except ImageError as e:
            print(f"vitlab: skipped {e}", file=sys.stderr)
    if not images:
        raise VitlabError(f"none of the {len(files)} files could be read as an image")
    return torch.stack(images), kept


def prediction_rows(
    files: list[Path], probs: torch.Tensor, classes: list[str], top_k: int
) -> tuple[list[str], list[dict]]:
    """The CSV header and one row per file: path, label, confidence, the next ``top_k - 1`` guesses, every
    probability."""
    header = ["path", "label", "confidence"]
    for k in range(2, top_k + 1):
        header += [f"label_{k}", f"confidence_{k}"]
    header += classes
    conf, top = probs.topk(top_k, dim=1)
    rows = []
    for i, f in enumerate(files):
        row = {"path": display_path(f), "label": classes[top[i, 0]], "confidence": f"{conf[i, 0].item():.6f}"}
        for k in range(1, top_k):
            row[f"label_{k + 1}"] = classes[top[i, k]]
            row[f"confidence_{k + 1}"] = f"{conf[i, k].item():.6f}"
        row.update({c: f"{p:.6f}" for c, p in zip(classes, probs[i].tolist())})
        rows.append(row)
    return header, rows


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
    """One row per readable image (see ``prediction_rows``), written as CSV to ``out`` (atomically) or stdout.

    ``tta``: test-time augmentation (none, flip, full); None: the checkpoint's ``train.tta``."""
    clf = Classifier.from_checkpoint(checkpoint, device, batch_size=batch_size, tta=tta)
    if not 1 <= top_k <= len(clf.classes):
        raise VitlabError(f"expected 1 to {len(clf.classes)} (the number of classes), got {top_k}", field="top_k")
    files = collect_images(paths)
    if not files:
        raise VitlabError(f"no image files found in {' '.join(paths)}")
    if out is not None:
        refuse_overwriting_inputs(Path(out), [Path(checkpoint), *files])
    images, kept = read_images(clf, files)
    header, rows = prediction_rows(kept, clf.predict(images), clf.classes, top_k)
    text = csv_text([header, *([row[k] for k in header] for row in rows)])
    if out is None:
        sys.stdout.write(text)
    else:
        atomic_write_text(text, Path(out))
        print(f"wrote {len(rows)} predictions to {out} ({len(files) - len(rows)} files skipped)", file=sys.stderr)
    return rows
