"""Validation metrics from scikit-learn: accuracy, macro precision/recall/F1, one-vs-rest macro AUC."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, precision_recall_fscore_support, roc_auc_score


def classification_metrics(y_true: np.ndarray, probs: np.ndarray, prefix: str = "val_") -> dict[str, float]:
    """Metrics of class probabilities `probs` (N×C) against integer labels; AUC is NaN where undefined."""
    pred = probs.argmax(axis=1)
    labels = np.arange(probs.shape[1])
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true, pred, labels=labels, average="macro", zero_division=0
    )
    try:
        auc = float(roc_auc_score(y_true, probs, multi_class="ovr", average="macro", labels=labels))
    except ValueError:  # non-finite probabilities, or a class absent from y_true
        auc = float("nan")
    return {
        f"{prefix}acc": float(accuracy_score(y_true, pred)),
        f"{prefix}precision": float(precision),
        f"{prefix}recall": float(recall),
        f"{prefix}f1": float(f1),
        f"{prefix}auc": auc,
    }
