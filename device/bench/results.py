"""tl-bench results: latency statistics, one row per model × threads, accuracy and agreement."""

import dataclasses
import statistics

import numpy as np

from tl.device.data.metrics import classification_report

# The bucket for predictions that are not one of the data's classes (a 1001-class ImageNet model on pets).
OTHER = "(other)"


@dataclasses.dataclass
class Latency:
    """Invoke latency over the timed runs, in milliseconds: what TFLite's benchmark_model reports."""

    count: int
    mean_ms: float
    std_ms: float
    min_ms: float
    median_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    @classmethod
    def from_ns(cls, samples_ns):
        """Summarises durations given in nanoseconds."""
        ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])
        return cls(
            count=int(ms.size), mean_ms=float(ms.mean()), std_ms=float(ms.std()), min_ms=float(ms.min()),
            median_ms=float(p50), p90_ms=float(p90), p99_ms=float(p99), max_ms=float(ms.max()),
        )


@dataclasses.dataclass
class Row:
    """One model at one thread count; `error` is set (and most numbers None) when it failed.

    Attributes:
      model, name: the file and its short name in tables.
      threads: interpreter CPU threads.
      kind, variant, input, delegate, runtime: what ran and how ("tflite"/"keras", "int8"...,
        "224x224 uint8", "XNNPACK"..., "ai-edge-litert 2.3.0").
      size_bytes: the model file's size.
      rounds: how many times it was measured (interleaved with the other rows).
      load_ms, first_ms: interpreter creation + allocation, and the first invoke (medians over rounds).
      latency: invoke latency after warm-up, pooled over rounds.
      spread_ms: max − min of the per-round median latencies (0 with one round).
      vs_first: median latency ÷ the first model's median at the same threads.
      rss_base_mb, peak_rss_mb: the worker's peak RSS before loading the model and at the end.
      accuracy, images, recall, confusion, classes: top-1 metrics over --data (None without it).
      agreement: share of images where this row's top-1 equals the first model's.
      e2e_fps, e2e_ms: decode + preprocess + invoke throughput over the --data images.
      skipped: [path, reason] of data images that could not be decoded.
    """

    model: str
    name: str
    threads: int
    error: str = None
    kind: str = None
    variant: str = None
    input: str = None
    delegate: str = None
    runtime: str = None
    size_bytes: int = None
    rounds: int = 0
    load_ms: float = None
    first_ms: float = None
    latency: Latency = None
    spread_ms: float = None
    vs_first: float = None
    rss_base_mb: float = None
    peak_rss_mb: float = None
    accuracy: float = None
    images: int = None
    recall: dict = None
    confusion: list = None
    classes: list = None
    agreement: float = None
    e2e_fps: float = None
    e2e_ms: float = None
    skipped: list = None
    predictions: list = dataclasses.field(default=None, repr=False)

    @property
    def ok(self):
        return self.error is None

    def to_dict(self):
        """A JSON-ready dict (predictions left out: they are per image)."""
        d = dataclasses.asdict(self)
        d.pop("predictions")
        d["status"] = "ok" if self.ok else f"failed: {self.error}"
        return d


def build_row(model, name, threads, size_bytes, results):
    """Folds the worker results of every round of one model × threads into a Row."""
    row = Row(model=str(model), name=name, threads=threads, size_bytes=size_bytes, rounds=len(results))
    failed = [r for r in results if not r["ok"]]
    if failed:
        row.error = failed[0]["error"]
        return row
    first = results[0]
    row.kind, row.variant, row.input = first["kind"], first["variant"], first["input"]
    row.delegate, row.runtime = first["delegate"], first["runtime"]
    row.load_ms = statistics.median(r["load_ms"] for r in results)
    row.first_ms = statistics.median(r["first_ms"] for r in results)
    row.latency = Latency.from_ns(np.concatenate([r["latency_ns"] for r in results]))
    medians = [float(np.median(r["latency_ns"])) / 1e6 for r in results]
    row.spread_ms = max(medians) - min(medians)
    row.rss_base_mb = _min_or_none(r["rss_base_mb"] for r in results)
    row.peak_rss_mb = _max_or_none(r["peak_rss_mb"] for r in results)
    # Predictions are deterministic, so the first round's stand for all; timings are medians.
    row.predictions, row.skipped = first["predictions"], first["skipped"]
    classified = [r for r in results if r["e2e_s"] > 0]
    if classified:
        done = sum(p is not None for p in row.predictions)
        row.e2e_fps = statistics.median(done / r["e2e_s"] for r in classified)
        row.e2e_ms = 1000.0 / row.e2e_fps
    return row


def _min_or_none(values):
    values = [v for v in values if v is not None]
    return min(values) if values else None


def _max_or_none(values):
    values = [v for v in values if v is not None]
    return max(values) if values else None


def add_accuracy(row, truths, classes):
    """Fills top-1 accuracy, per-class recall and the confusion matrix from the row's predictions.

    Args:
      row: an ok Row with predictions (a label per data image, None where skipped).
      truths: the class name of each data image.
      classes: the data's class names (its folders), the rows of the confusion matrix.
    """
    pairs = [(t, p) for t, p in zip(truths, row.predictions) if p is not None]
    if not pairs:
        return
    labels = list(classes)
    if any(p not in labels for _, p in pairs):
        labels.append(OTHER)
    index = {c: i for i, c in enumerate(labels)}
    y_true = [index[t] for t, _ in pairs]
    y_pred = [index.get(p, index.get(OTHER)) for _, p in pairs]
    report = classification_report(y_true, y_pred, labels)
    row.accuracy, row.images = report["accuracy"], report["count"]
    row.recall = {c: report["per_class"][c]["recall"] for c in classes}
    row.confusion, row.classes = report["confusion"], labels


def reference_row(rows, first_model, threads):
    """The first model's ok row at `threads`, else any ok row of it (None when it failed)."""
    mine = [r for r in rows if r.model == first_model and r.ok]
    same = [r for r in mine if r.threads == threads]
    return (same or mine or [None])[0]


def add_comparisons(rows, first_model):
    """Fills `vs_first` (latency ratio) and `agreement` (top-1 agreement) against the first model."""
    for row in rows:
        ref = reference_row(rows, first_model, row.threads)
        if not row.ok or ref is None:
            continue
        row.vs_first = row.latency.median_ms / ref.latency.median_ms
        if row.predictions and ref.predictions:
            both = [(a, b) for a, b in zip(row.predictions, ref.predictions) if a is not None and b is not None]
            if both:
                row.agreement = round(sum(a == b for a, b in both) / len(both), 4)
