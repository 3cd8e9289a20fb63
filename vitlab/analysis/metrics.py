"""Confusion matrix, per-class scores and the most confused pairs (scikit-learn does the counting)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support


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
        pairs.append({"true": classes[i], "predicted": classes[j], "count": int(off[i, j]),
                      "share": float(off[i, j] / max(cm[i].sum(), 1))})
    return pairs
