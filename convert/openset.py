"""tl-convert's open-set part: carry the run's statistics into the model, add the embedding output, check both.

Every classifier converted from a run with open-set statistics gets a second output (the unit
embedding) and carries `openset.npz` in its appended archive. Int8 rounding moves embeddings a
little (cosine ~0.97 to float), which lengthens distances to the prototypes; that shift is measured
per variant on the calibration images and recorded, so the device widens the radii by it.
"""

import hashlib
import logging
import statistics

import numpy as np

from tl.convert.embedding import EMBEDDING, SCORES, name_outputs
from tl.device.model.classifier import Classifier
from tl.device.model.contract import set_input
from tl.device.model.metadata import ModelInfo
from tl.device.model.outputs import find_outputs, read_embedding
from tl.device.model.runtime import make_interpreter
from tl.device.recognition.openset import STATS_NAME, OpenSetStats, class_distances
from tl.device.recognition.recognizer import openset_for

log = logging.getLogger(__name__)

SHIFT_IMAGES = 100  # images the int8 distance shift is measured on (about a second)


def load_run_stats(source):
    """The open-set statistics of a RUN_DIR source, or None (with a warning saying why) when it has none usable."""
    run = source.run
    if run is None:
        return None
    path = run.run_dir / STATS_NAME
    recorded = (run.record.get("openset") or {}).get("sha256")
    if not path.is_file():
        if recorded:
            log.warning("%s is missing; the models get no open-set statistics (train again to make it)", path)
        return None
    data = path.read_bytes()
    if recorded and hashlib.sha256(data).hexdigest() != recorded:
        log.warning("%s does not belong to this run's train.json (interrupted training?); the models get no "
                    "open-set statistics: train again", path)
        return None
    stats = OpenSetStats.from_bytes(data, str(path))
    if list(stats.labels) != list(source.labels):
        log.warning("%s is for classes %s, not %s; left out", path, list(stats.labels), source.labels)
        return None
    return stats


def classifier_finish(graph_ref, stats, pixels):
    """The export hook of the two-output classifier: name the outputs, measure the shift, attach the stats.

    Args:
      graph_ref: the classifier GraphReference (two outputs).
      stats: the OpenSetStats, or None (the embedding output is still added, for identity checks).
      pixels: images to measure the distance shift on (calibration or evaluation images).
    """
    sample = pixels[:SHIFT_IMAGES] if stats is not None else pixels[:0]
    float_dist = _nearest_distances(graph_ref.embed(sample), stats) if len(sample) else None
    files = {STATS_NAME: stats.to_bytes()} if stats is not None else {}

    def finish(model_bytes, quantization):
        model_bytes = name_outputs(model_bytes, [SCORES, EMBEDDING])
        extra = _embedding_extra(graph_ref)
        if stats is None:  # --embedding without statistics: the output serves identity checks only
            return model_bytes, extra, files
        shift = 0.0
        if float_dist is not None:
            variant = _embed_bytes(model_bytes, ModelInfo([], None, extra=extra), sample, len(stats.labels))
            shift = float(np.mean(_nearest_distances(variant, stats) - float_dist))
        extra["openset"] = {"shift": round(shift, 5), "shift_images": len(sample), "file": STATS_NAME,
                            "default_quantile": stats.meta.get("default_quantile")}
        log.info("%s: embedding distances %+.4f on average vs float (%d images)", quantization.variant, shift,
                 len(sample))
        return model_bytes, extra, files

    return finish


def embedder_finish(graph_ref, stats):
    """The export hook of the embedder: name its output, record the embedding id, attach the stats if any."""

    def finish(model_bytes, quantization):
        return (name_outputs(model_bytes, [EMBEDDING]), _embedding_extra(graph_ref, scores=False),
                {STATS_NAME: stats.to_bytes()} if stats is not None else {})

    return finish


def _embedding_extra(graph_ref, scores=True):
    outputs = {SCORES: SCORES, EMBEDDING: EMBEDDING} if scores else {EMBEDDING: EMBEDDING}
    return {"outputs": outputs, "embedding": {"id": graph_ref.embedding_id, "dim": graph_ref.dim,
                                              "normalised": "l2"}}


def _nearest_distances(embeddings, stats):
    return np.array([class_distances(e / max(np.linalg.norm(e), 1e-12), stats.prototypes, stats.owner,
                                     len(stats.labels)).min() for e in embeddings])


def _embed_bytes(model_bytes, info, pixels, num_labels):
    """Unit embeddings of `pixels` through a converted model held in memory, read as the device reads them."""
    interpreter = make_interpreter(model_bytes, threads=2, edgetpu=False)
    output = find_outputs(interpreter.get_output_details(), info, num_labels, "converted model").embedding
    out = []
    for x in pixels:
        set_input(interpreter, x)
        interpreter.invoke()
        out.append(read_embedding(interpreter, output))
    return np.array(out, np.float32)


def check_all(paths, evalset, labels, echo):
    """Rejection rate and accuracy with rejection of each classifier that carries open-set statistics."""
    out = {}
    for variant, path in paths.items():
        result = check_openset(path, evalset, labels)
        if result is not None:
            out[variant] = result
            echo(describe_check(variant, result))
    return out or None


def check_openset(path, evalset, labels):
    """Open-set rejection of one converted classifier on the evaluation images, through the device's code.

    Returns:
      {"method", "quantile", "shift", "images", "rejected", "accuracy", "accuracy_with_rejection"} (the
      accuracies only with labelled images), or None when the file carries no statistics.
    """
    classifier = Classifier(path)
    openset = openset_for(classifier)
    if openset is None or not len(evalset):
        return None
    unknown, top = [], []
    for x in evalset.pixels:
        scores = classifier.classify_pixels(x)
        unknown.append(openset.check(scores, classifier.embedding()).unknown)
        top.append(int(np.argmax(scores)))
    unknown, top = np.array(unknown), np.array(top)
    result = {"method": openset.method, "quantile": openset.quantile, "shift": openset.shift,
              "radii": {c: round(float(r), 4) for c, r in zip(labels, np.atleast_1d(openset.limits))},
              "images": int(len(unknown)), "rejected": round(float(unknown.mean()), 4)}
    if evalset.labels is not None:
        correct = top == evalset.labels
        result.update(accuracy=round(float(correct.mean()), 4),
                      accuracy_with_rejection=round(float((correct & ~unknown).mean()), 4))
    return result


def check_embedder(path, evalset, graph_ref):
    """How close one converted embedder's embeddings are to the Keras model's (cosine) on the evaluation images."""
    from tl.device.recognition.embedder import Embedder

    embedder = Embedder(path)
    if not len(evalset):
        return {"path": str(path), "bytes": path.stat().st_size, "embedding_id": embedder.embedding_id}
    ref = graph_ref.embed(evalset.pixels)
    ref /= np.maximum(np.linalg.norm(ref, axis=1, keepdims=True), 1e-12)
    cos = [float(embedder.embed_pixels(x) @ r) for x, r in zip(evalset.pixels, ref)]
    return {"path": str(path), "bytes": path.stat().st_size, "embedding_id": embedder.embedding_id,
            "dim": embedder.dim, "cosine_to_float_median": round(statistics.median(cos), 4),
            "cosine_to_float_min": round(min(cos), 4), "images": len(cos)}


def describe_check(variant, result):
    """One line for the terminal."""
    acc = ""
    if "accuracy" in result:
        acc = (f"; accuracy {100 * result['accuracy']:.1f} % -> {100 * result['accuracy_with_rejection']:.1f} % "
               "with rejection")
    return (f"open-set {variant} ({result['method']}, q {result['quantile']:g}): rejects "
            f"{100 * result['rejected']:.1f} % of {result['images']} evaluation images{acc}")
