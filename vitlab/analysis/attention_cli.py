"""``vitlab attention`` and ``vitlab explain``: attention maps and class-specific explanations of any image files,
one PNG each."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

import torch

from vitlab.analysis import figures
from vitlab.analysis.explain import explain
from vitlab.data.images import ImageError, display_path
from vitlab.errors import VitlabError
from vitlab.inference import Classifier
from vitlab.predict import collect_images


def readable_images(clf: Classifier, paths: list[str]) -> Iterator[tuple[Path, torch.Tensor]]:
    """(file, uint8 image at the model's size) for each readable image among ``paths``; the others are named on
    stderr and skipped."""
    for f in collect_images(paths):
        try:
            yield f, clf.read(f)
        except ImageError as e:
            print(f"vitlab: skipped {e}", file=sys.stderr)


def attention_maps(checkpoint: str | Path, paths: list[str], out: Path, *, device: str = "auto") -> list[Path]:
    """Write ``OUT/<name>_attention.png`` (image, last-layer class-token attention, rollout) per readable image."""
    clf = Classifier.from_checkpoint(checkpoint, device)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for f, img in readable_images(clf, paths):
        logits, heat = clf.attention(img[None])
        p = logits.softmax(1)[0]
        k = int(p.argmax())
        row = {
            "image": img.permute(1, 2, 0).numpy(),
            "last": heat["last"][0].numpy(),
            "rollout": heat["rollout"][0].numpy(),
            "title": f"{display_path(Path(f.name))}\n{clf.classes[k]} {p[k]:.0%}",
        }
        written.append(figures.attention_grid([row], out / f"{f.stem}_attention.png"))
    if not written:
        raise VitlabError("no readable image among the given paths")
    return written


def explain_files(
    checkpoint: str | Path,
    paths: list[str],
    out: Path,
    *,
    method: str = "grad-rollout",
    class_name: str | None = None,
    fusion: str = "mean",
    discard: float = 0.0,
    device: str = "auto",
) -> list[Path]:
    """Write ``OUT/<name>_<method>.png`` (the image and its explanation for ``class_name``, default the predicted
    class) per readable image."""
    clf = Classifier.from_checkpoint(checkpoint, device)
    if class_name is not None and class_name not in clf.classes:
        raise VitlabError(
            f"not one of the model's classes ({', '.join(clf.classes)})", field="class_name", value=class_name
        )
    if not 0.0 <= discard < 1.0:
        raise VitlabError(f"expected a share in [0, 1), got {discard}", field="discard")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for f, img in readable_images(clf, paths):
        target = None if class_name is None else torch.tensor([clf.classes.index(class_name)], device=clf.device)
        logits, heat = explain(clf.model, clf.transform(img[None].to(clf.device)), method, target, fusion, discard)
        p = (logits / clf.temperature).softmax(1)[0].cpu()
        k = int(p.argmax())
        shown = k if target is None else int(target[0])
        what = (
            f"evidence for {clf.classes[shown]} ({p[shown]:.0%})"
            if method in ("grad-rollout", "gradcam")
            else "the same for every class"
        )
        item = {
            "image": img.permute(1, 2, 0).numpy(),
            "heat": heat[0].numpy(),
            "title": f"{display_path(Path(f.name))}\npredicted {clf.classes[k]} {p[k]:.0%}",
            "label": f"{method}: {what}",
        }
        written.append(figures.explanation_grid([item], out / f"{f.stem}_{method}.png", per_row=1))
    if not written:
        raise VitlabError("no readable image among the given paths")
    return written
