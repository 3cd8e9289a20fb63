"""The report's figures, drawn with matplotlib's Agg backend (no display needed), one PNG each."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

DPI = 110


def _literal_text(draw: Callable[..., Path]) -> Callable[..., Path]:
    """Class and file names are drawn as written: ``$\\foo$`` must not reach matplotlib's mathtext parser."""

    @functools.wraps(draw)
    def wrapper(*args, **kwargs) -> Path:
        with plt.rc_context({"text.parse_math": False}):
            return draw(*args, **kwargs)

    return wrapper


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def _class_colors(n: int):
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20" if n <= 20 else "turbo")
    return [cmap(i if n <= 20 else i / max(n - 1, 1)) for i in range(n)]


def step_losses(records: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Every training step's loss from the records' ``step_loss`` lists, placed at fractional epochs."""
    xs, ys = [], []
    for r in records:
        losses = r.get("step_loss") or []
        start = r["epoch"] - 1  # a budget-cut epoch ran its steps from its start
        xs += [start + (i + 1) / len(losses) * r.get("epoch_fraction", 1.0) for i in range(len(losses))]
        ys += losses
    return np.asarray(xs), np.asarray(ys)


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average (the first points average what there is)."""
    sums = np.cumsum(np.insert(values, 0, 0.0))
    counts = np.minimum(np.arange(1, len(values) + 1), window)
    return (sums[1:] - sums[np.maximum(np.arange(1, len(values) + 1) - window, 0)]) / counts


@_literal_text
def curves(records: list[dict], path: Path) -> Path:
    """Train and validation loss and accuracy per epoch, and the training loss of every step (smoothed)."""
    epochs = [r["epoch"] for r in records]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    x, y = step_losses(records)
    if len(y):
        ax_loss.plot(x, y, color="#999", linewidth=0.5, alpha=0.5, label="train, per step")
        ax_loss.plot(x, smooth(y, max(1, len(y) // 50)), color="#555", linewidth=1.2, label="train, smoothed")
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


@_literal_text
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


@_literal_text
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


@_literal_text
def attention_grid(items: list[dict], path: Path, per_row: int = 2) -> Path:
    """Each item is three panels (four with ``grad``): the image, its last-layer class-token attention, its rollout
    and the predicted class's gradient-weighted rollout, overlaid.

    ``items``: ``{"image": (H, W, 3) uint8, "last": (H, W), "rollout": (H, W), "title": str}`` and optionally
    ``"grad": (H, W)``, laid out ``per_row`` items to a row.
    """
    n_rows = -(-len(items) // per_row)
    width = 4 if all("grad" in item for item in items) else 3
    fig, axes = plt.subplots(n_rows, width * per_row, figsize=(2.0 * width * per_row, 2.3 * n_rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for k, item in enumerate(items):
        r, c0 = divmod(k, per_row)
        panels = (
            (item["title"], None),
            ("last layer", item["last"]),
            ("rollout", item["rollout"]),
            ("evidence (grad-rollout)", item.get("grad")),
        )[:width]
        for c, (label, heat) in enumerate(panels):
            ax = axes[r, width * c0 + c]
            ax.imshow(item["image"])
            if heat is not None:
                ax.imshow(heat, cmap="inferno", alpha=0.55, vmin=0, vmax=1)
            ax.set_title(label, fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


@_literal_text
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


@_literal_text
def reliability(bins: list[dict], ece: float, path: Path) -> Path:
    """Reliability diagram: accuracy per confidence bin against the diagonal of perfect calibration, and how
    many images each bin holds."""
    fig, (ax, ax_count) = plt.subplots(2, 1, figsize=(5.5, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    width = bins[0]["high"] - bins[0]["low"]
    centres = [b["low"] + width / 2 for b in bins]
    full = [(c, b) for c, b in zip(centres, bins) if b["count"]]
    ax.bar([c for c, _ in full], [b["accuracy"] for _, b in full], width=width * 0.9, color="#4c72b0", label="accuracy")
    # The gap between accuracy and mean confidence, hatched, whichever is higher (Guo et al., 2017, figure 1).
    ax.bar(
        [c for c, _ in full],
        [abs(b["confidence"] - b["accuracy"]) for _, b in full],
        width=width * 0.9,
        bottom=[min(b["confidence"], b["accuracy"]) for _, b in full],
        facecolor="none",
        edgecolor="#c44e52",
        hatch="///",
        label="gap to mean confidence",
    )
    ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    ax.set(ylim=(0, 1), ylabel="accuracy", title=f"Reliability (expected calibration error {ece:.3f})")
    ax.legend(loc="upper left")
    ax_count.bar(centres, [b["count"] for b in bins], width=width * 0.9, color="#8c8c8c")
    ax_count.set(xlim=(0, 1), xlabel="confidence of the top class", ylabel="images")
    return _save(fig, path)


@_literal_text
def compare_curves(runs: list[tuple[str, list[dict]]], path: Path) -> Path:
    """Training loss and validation accuracy of several runs, against the epoch and the seconds of training."""
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    colors = _class_colors(len(runs))
    for color, (name, records) in zip(colors, runs):
        x, y = step_losses(records)
        if len(y):  # every step's loss, smoothed, behind the per-epoch points
            axes[0, 0].plot(x, smooth(y, max(1, len(y) // 50)), color=color, linewidth=0.8, alpha=0.6)
        epochs = [r["epoch"] for r in records]
        seconds = [r.get("train_seconds", float("nan")) for r in records]
        loss = [r["train_loss"] for r in records]
        val = [r.get("val_acc", float("nan")) for r in records]
        for col, x in enumerate((epochs, seconds)):
            axes[0, col].plot(x, loss, "o-", color=color, label=name)
            axes[1, col].plot(x, val, "s-", color=color, label=name)
    for row, what in enumerate(("training loss", "validation accuracy")):
        for col, xlabel in enumerate(("epoch", "seconds of training")):
            ax = axes[row, col]
            ax.set(xlabel=xlabel, ylabel=what, title=f"{what} by {xlabel.split()[0]}")
            ax.grid(alpha=0.3)
        axes[row, 0].xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0, 0].legend()
    return _save(fig, path)


@_literal_text
def explanation_grid(items: list[dict], path: Path, per_row: int = 2) -> Path:
    """Each item is two panels: the image, and the image under its heatmap.

    ``items``: ``{"image": (H, W, 3) uint8, "heat": (H, W) in [0, 1], "title": str, "label": str}``.
    """
    n_rows = -(-len(items) // per_row)
    fig, axes = plt.subplots(n_rows, 2 * per_row, figsize=(2.6 * 2 * per_row, 2.8 * n_rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for k, item in enumerate(items):
        r, c0 = divmod(k, per_row)
        axes[r, 2 * c0].imshow(item["image"])
        axes[r, 2 * c0].set_title(item["title"], fontsize=8)
        axes[r, 2 * c0 + 1].imshow(item["image"])
        axes[r, 2 * c0 + 1].imshow(item["heat"], cmap="inferno", alpha=0.55, vmin=0, vmax=1)
        axes[r, 2 * c0 + 1].set_title(item["label"], fontsize=8)
    fig.tight_layout()
    return _save(fig, path)
