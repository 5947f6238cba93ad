"""What a person reads after training: the learning curves, the confusion matrix, a summary table."""

import numpy as np

from tl.device.data import atomic


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; works on a headless box
    import matplotlib.pyplot as plt

    return plt


def plot_history(path, phases):
    """Plots loss and accuracy per epoch, train vs validation, one segment per phase.

    Args:
      path: the PNG to write (atomically).
      phases: [(name, history dict)], e.g. [("head", h1), ("fine-tune", h2)].
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    start = 0
    for name, hist in phases:
        epochs = np.arange(start + 1, start + 1 + len(hist.get("loss", [])))
        for ax, key in zip(axes, ("loss", "accuracy")):
            if key in hist:
                ax.plot(epochs, hist[key], label=f"{name} train")
            if f"val_{key}" in hist:
                ax.plot(epochs, hist[f"val_{key}"], "--", label=f"{name} validation")
        if start:
            for ax in axes:
                ax.axvline(start + 0.5, color="grey", lw=0.8)
        start += len(epochs)
    for ax, title in zip(axes, ("loss", "accuracy")):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def plot_confusion(path, confusion, labels, title="validation"):
    """Draws the confusion matrix with counts in the cells, colour by row share (recall)."""
    plt = _pyplot()
    cm = np.asarray(confusion)
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    n = len(labels)
    fig, ax = plt.subplots(figsize=(1.2 * n + 2.5, 1.2 * n + 1.8), dpi=100)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), labels, rotation=45, ha="right")
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"confusion ({title}, {int(cm.sum())} images)")
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", color="white" if share[i, j] > 0.5 else "black")
    fig.tight_layout()
    _save(fig, path)


def _save(fig, path):
    plt = _pyplot()
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def format_summary(record):
    """Returns the end-of-training table: per-class precision/recall/F1, accuracy, time, files."""
    m = record["metrics"]["val"]
    width = max(8, *(len(c) for c in m["per_class"]))
    lines = [f"{'class':<{width}}  precision  recall     f1  support", "-" * (width + 36)]
    for c, r in m["per_class"].items():
        lines.append(f"{c:<{width}}  {r['precision']:9.3f}  {r['recall']:6.3f}  {r['f1']:5.3f}  {r['support']:7d}")
    lines.append("-" * (width + 36))
    lines.append(f"{'accuracy':<{width}}  {m['accuracy']:.3f} on {m['count']} validation images"
                 f" (train {record['metrics']['train']['accuracy']:.3f})")
    t = record["timings"]
    lines.append(f"time: {t['total_s']:.1f} s (embeddings {t['embed_s']:.1f} s, head {t['head_s']:.1f} s"
                 + (f", fine-tune {t['fine_tune_s']:.1f} s" if t.get("fine_tune_s") else "") + ")")
    return "\n".join(lines)
