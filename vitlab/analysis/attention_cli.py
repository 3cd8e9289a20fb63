"""``vitlab attention``: attention maps of any image files, one PNG each."""

from __future__ import annotations

import sys
from pathlib import Path


from vitlab.analysis import figures
from vitlab.analysis.attention import attention_overlays
from vitlab.data.augment import BatchTransform
from vitlab.data.images import ImageError, read_image
from vitlab.errors import VitlabError
from vitlab.predict import collect_images
from vitlab.train.checkpoint import load_checkpoint
from vitlab.train.trainer import resolve_device


def attention_maps(checkpoint: str | Path, paths: list[str], out: Path, *, device: str = "auto") -> list[Path]:
    """Write ``OUT/<name>_attention.png`` (image, last-layer class-token attention, rollout) per readable image."""
    model, meta = load_checkpoint(checkpoint, resolve_device(device))
    dev = next(model.parameters()).device
    size = meta["config"].model.img_size
    transform = BatchTransform(meta["mean"], meta["std"], size, device=dev)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for f in collect_images(paths):
        try:
            img = read_image(f, size)
        except ImageError as e:
            print(f"vitlab: skipped {e}", file=sys.stderr)
            continue
        logits, heat = attention_overlays(model, img[None], transform)
        p = logits.softmax(1)[0]
        k = int(p.argmax())
        row = {"image": img.permute(1, 2, 0).numpy(), "last": heat["last"][0].numpy(),
               "rollout": heat["rollout"][0].numpy(), "title": f"{f.name}\n{meta['classes'][k]} {p[k]:.0%}"}
        written.append(figures.attention_grid([row], out / f"{f.stem}_attention.png"))
    if not written:
        raise VitlabError("no readable image among the given paths")
    return written
