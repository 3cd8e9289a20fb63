"""The report's figures, drawn with matplotlib's Agg backend (no display needed), one PNG each."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

DPI = 110


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def _class_colors(n: int):
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20" if n <= 20 else "turbo")
    return [cmap(i if n <= 20 else i / max(n - 1, 1)) for i in range(n)]


def curves(records: list[dict], path: Path) -> Path:
    """Train and validation loss and accuracy per epoch."""
    epochs = [r["epoch"] for r in records]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key, title in ((ax_loss, "loss", "Loss"), (ax_acc, "acc", "Accuracy")):
        ax.plot(epochs, [r[f"train_{key}"] for r in records], "o-", label="train")
        if all(f"val_{key}" in r for r in records):
            ax.plot(epochs, [r[f"val_{key}"] for r in records], "s-", label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(key if key == "loss" else "accuracy")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    return _save(fig, path)


def confusion_matrix(cm: np.ndarray, classes: list[str], path: Path) -> Path:
    """Counts in each cell with the row percentage (share of the true class) beneath."""
    k = len(classes)
    size = max(6.0, 0.6 * k + 2)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    rows = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    im = ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    if k <= 30:
        for i in range(k):
            for j in range(k):
                color = "white" if rows[i, j] > 0.5 else "black"
                ax.text(j, i, f"{cm[i, j]}\n{rows[i, j]:.0%}", ha="center", va="center", fontsize=7, color=color)
    ticks = np.arange(k) if k <= 30 else np.arange(0, k, max(1, k // 20))
    ax.set_xticks(ticks, [classes[t] for t in ticks], rotation=45, ha="right")
    ax.set_yticks(ticks, [classes[t] for t in ticks])
    ax.set_xlabel("predicted label")
    ax.set_ylabel("true label")
    ax.set_title(f"Confusion matrix on the test split ({cm.sum()} images)")
    return _save(fig, path)


def tsne(points: np.ndarray, labels: np.ndarray, classes: list[str], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(8, 7))
    for c, color in enumerate(_class_colors(len(classes))):
        sel = labels == c
        ax.scatter(points[sel, 0], points[sel, 1], s=6, color=color, label=classes[c], alpha=0.8)
    ax.set_title(f"t-SNE of the class-token embedding ({len(labels)} test images)")
    ax.set_xlabel("t-SNE 1")
    ax.set_ylabel("t-SNE 2")
    if len(classes) <= 20:
        ax.legend(markerscale=3, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return _save(fig, path)


def attention_grid(items: list[dict], path: Path, per_row: int = 2) -> Path:
    """Each item is three panels: the image, its last-layer class-token attention and its rollout overlaid.

    ``items``: ``{"image": (H, W, 3) uint8, "last": (H, W), "rollout": (H, W), "title": str}``, laid out
    ``per_row`` items to a row.
    """
    n_rows = -(-len(items) // per_row)
    fig, axes = plt.subplots(n_rows, 3 * per_row, figsize=(2.0 * 3 * per_row, 2.3 * n_rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for k, item in enumerate(items):
        r, c0 = divmod(k, per_row)
        panels = ((item["title"], None), ("last layer", item["last"]), ("rollout", item["rollout"]))
        for c, (label, heat) in enumerate(panels):
            ax = axes[r, 3 * c0 + c]
            ax.imshow(item["image"])
            if heat is not None:
                ax.imshow(heat, cmap="inferno", alpha=0.55, vmin=0, vmax=1)
            ax.set_title(label, fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def image_grid(images: list[np.ndarray], titles: list[str], path: Path, title: str, cols: int = 8) -> Path:
    n = len(images)
    rows = max(1, -(-n // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.7 * cols, 1.95 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, t in zip(axes.flat, images, titles):
        ax.imshow(img)
        ax.set_title(t, fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)
