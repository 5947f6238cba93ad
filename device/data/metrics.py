"""Classification metrics in plain numpy: accuracy, per-class precision/recall/F1, confusion matrix."""

import numpy as np


def confusion_matrix(y_true, y_pred, num_classes):
    """Returns an (n, n) int matrix; rows are true classes, columns predicted ones."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return cm


def classification_report(y_true, y_pred, labels):
    """Summarises predictions against the truth.

    Args:
      y_true, y_pred: class indices.
      labels: class names, indexed by class.

    Returns:
      {"accuracy", "count", "per_class": {label: {precision, recall, f1, support}}, "confusion"}
      (a JSON-ready dict; the confusion matrix as nested lists).
    """
    cm = confusion_matrix(y_true, y_pred, len(labels))
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    # A class never predicted (or never present) has an undefined ratio; report 0 as scikit-learn does.
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    total = int(cm.sum())
    per_class = {
        label: {
            "precision": round(float(precision[i]), 4),
            "recall": round(float(recall[i]), 4),
            "f1": round(float(f1[i]), 4),
            "support": int(support[i]),
        }
        for i, label in enumerate(labels)
    }
    return {
        "accuracy": round(float(tp.sum() / total), 4) if total else 0.0,
        "count": total,
        "per_class": per_class,
        "confusion": cm.tolist(),
    }
