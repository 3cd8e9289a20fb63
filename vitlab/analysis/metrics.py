"""Confusion matrix, per-class scores, the most confused pairs, and the metrics people trust beyond accuracy:
top-5, macro-F1, balanced accuracy, calibration (expected calibration error) and a warning when predictions
collapse onto a few classes. scikit-learn does the counting."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    top_k_accuracy_score,
)

CALIBRATION_BINS = 15  # equal-width confidence bins, as in Guo et al. (2017)


def confusion(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts (K, K): rows are true classes, columns predicted classes."""
    return confusion_matrix(labels, preds, labels=np.arange(num_classes))


def per_class_scores(labels: np.ndarray, preds: np.ndarray, classes: list[str]) -> list[dict]:
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, preds, labels=np.arange(len(classes)), zero_division=0
    )
    return [
        {"class": c, "precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for c, p, r, f, s in zip(classes, precision, recall, f1, support)
    ]


def most_confused(cm: np.ndarray, classes: list[str], top: int = 5) -> list[dict]:
    """The off-diagonal cells with the most images: (true, predicted, count, share of the true class)."""
    off = cm.copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(off, axis=None)[::-1][:top]
    pairs = []
    for flat in order:
        i, j = np.unravel_index(flat, cm.shape)
        if off[i, j] == 0:
            break
        pairs.append(
            {
                "true": classes[i],
                "predicted": classes[j],
                "count": int(off[i, j]),
                "share": float(off[i, j] / max(cm[i].sum(), 1)),
            }
        )
    return pairs


def calibration_bins(probs: np.ndarray, labels: np.ndarray, bins: int = CALIBRATION_BINS) -> list[dict]:
    """Per equal-width bin of top-1 confidence: its range, image count, mean confidence and accuracy."""
    conf, correct = probs.max(1), probs.argmax(1) == labels
    index = np.minimum((conf * bins).astype(int), bins - 1)
    out = []
    for b in range(bins):
        sel = index == b
        out.append(
            {
                "low": b / bins,
                "high": (b + 1) / bins,
                "count": int(sel.sum()),
                "confidence": float(conf[sel].mean()) if sel.any() else None,
                "accuracy": float(correct[sel].mean()) if sel.any() else None,
            }
        )
    return out


def expected_calibration_error(bins: list[dict]) -> float:
    """ECE: the image-weighted mean gap between confidence and accuracy over the bins."""
    n = sum(b["count"] for b in bins)
    return sum(b["count"] * abs(b["confidence"] - b["accuracy"]) for b in bins if b["count"]) / max(n, 1)


def collapse_warning(preds: np.ndarray, labels: np.ndarray, classes: list[str]) -> str | None:
    """A sentence when the predictions pile onto a few classes (a ViT trained too hot on small data), else None:
    the most predicted class takes over three times its true share (or over half of the rest, for few classes),
    or half the classes are never predicted."""
    k, n = len(classes), max(len(preds), 1)
    predicted = np.bincount(preds, minlength=k) / n
    true = np.bincount(labels, minlength=k) / n
    top = int(predicted.argmax())
    never = int((predicted == 0).sum())
    if predicted[top] > min(3 * true[top], (1 + true[top]) / 2) or never >= k / 2:
        return (
            f"predictions collapse onto few classes: {classes[top]} takes {predicted[top]:.0%} of them "
            f"(its true share is {true[top]:.0%}); {never} of {k} classes are never predicted"
        )
    return None


def classification_metrics(
    probs: np.ndarray, labels: np.ndarray, classes: list[str] | None = None, preds: np.ndarray | None = None
) -> dict:
    """Accuracy, top-5 (10 classes or more), macro-F1, balanced accuracy, ECE, the calibration bins and a collapse
    warning (or None), from class probabilities (N, K) and true labels (N,). ``preds``: the predicted classes when
    known (the logits' argmax, which softmax's rounding could tie); ``classes``: names for the warning."""
    k = probs.shape[1]
    preds = probs.argmax(1) if preds is None else preds
    classes = classes or [f"class {i}" for i in range(k)]
    bins = calibration_bins(probs, labels)
    out = {
        "accuracy": float((preds == labels).mean()) if len(labels) else 0.0,
        "macro_f1": float(f1_score(labels, preds, labels=np.arange(k), average="macro", zero_division=0)),
        "balanced_accuracy": float(balanced_accuracy_score(labels, preds)),
        "ece": expected_calibration_error(bins),
        "calibration": bins,
        "collapse": collapse_warning(preds, labels, classes),
    }
    if k >= 10:
        out["top5"] = float(top_k_accuracy_score(labels, probs, k=5, labels=np.arange(k)))
    return out
