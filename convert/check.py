"""Checking a converted model: LiteRT on the evaluation images, against the Keras model's predictions.

The images go through the runtime contract (`tl.device`), and the model is loaded, checked, fed and
read exactly as the device does it: `make_interpreter`, `check_input`, `set_input`, `find_outputs`,
`read_output`.
"""

import dataclasses
import logging
import statistics
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from tl.device.data.dataset import Skipped
from tl.device.data.metrics import classification_report
from tl.device.errors import DataError, ModelError
from tl.device.model.contract import check_input, prepare_image, set_input
from tl.device.model.image import load_image
from tl.device.model.metadata import read_model_info
from tl.device.model.outputs import check_scores, find_outputs, read_output
from tl.device.model.runtime import make_interpreter
from tl.train.quiet import quiet_native_stderr

log = logging.getLogger(__name__)

WARMUP_RUNS = 3
MIN_TIMED_RUNS = 20  # small eval sets: time the first image again until there are this many


@dataclasses.dataclass
class EvalSet:
    """Evaluation images, prepared by the contract, with their labels (None: unlabelled)."""

    pixels: np.ndarray
    labels: np.ndarray
    paths: list
    skipped: list
    where: str

    def __len__(self):
        return len(self.pixels)


@dataclasses.dataclass
class Result:
    """How one model did; None where it was not measured (no evaluation images)."""

    name: str
    path: str
    bytes: int
    accuracy: float = None
    recall: dict = None
    agreement: float = None
    max_abs_diff: float = None
    latency_ms: float = None
    images: int = 0
    io: str = None
    input_quantization: list = None
    float_ops: list = None

    def to_json(self):
        return dataclasses.asdict(self)


def load_eval_set(samples, spec, where, progress=True):
    """Decodes and prepares the evaluation images; unusable files are skipped and listed."""
    pixels, labels, paths, skipped = [], [], [], []
    for s in tqdm(samples, desc="evaluation images", unit="img", disable=not progress, leave=False):
        try:
            pixels.append(prepare_image(load_image(s.path), spec))
        except DataError as e:
            skipped.append(Skipped(str(s.path), getattr(e, "reason", str(e))))
            log.warning("evaluation: skipped %s", e)
            continue
        labels.append(s.label)
        paths.append(str(s.path))
    stacked = np.stack(pixels) if pixels else np.zeros((0, spec.height, spec.width, 3), np.uint8)
    return EvalSet(stacked, np.asarray(labels, np.int64), paths, skipped, where)


def open_model(model, threads=1):
    """Loads a .tflite file (or a converted model's bytes) into an allocated interpreter, as the device does.

    Raises:
      ModelError: a missing, truncated or corrupt file, named by its path.
    """
    with quiet_native_stderr():  # LiteRT announces its CPU delegate on the first interpreter
        return make_interpreter(model, threads=threads, edgetpu=False)


def score_model(interpreter, pixels, spec, progress=True, desc="scoring", output=None):
    """Runs an interpreter on prepared images, timing each invoke.

    Args:
      interpreter: from `open_model`.
      pixels: prepared images (N, H, W, 3) uint8.
      spec: the InputSpec (its pixel range is applied as on the device).
      progress, desc: the progress bar.
      output: the scores output's details (`find_outputs(...).scores`); None: the model's only output.

    Returns:
      (scores (N, classes) float32, invoke latencies in ms, the input tensor's details).
    """
    detail = interpreter.get_input_details()[0]
    if output is None:
        output = find_outputs(interpreter.get_output_details(), None, None, "(model)").scores
    probe = pixels[0] if len(pixels) else np.full((spec.height, spec.width, 3), 128, np.uint8)
    for _ in range(WARMUP_RUNS):  # first invokes allocate and pack weights: not representative
        set_input(interpreter, probe, spec.pixel_range)
        interpreter.invoke()
    scores, times = [], []
    for x in tqdm(pixels, desc=desc, unit="img", disable=not progress, leave=False):
        set_input(interpreter, x, spec.pixel_range)
        times.append(_timed_invoke(interpreter))
        scores.append(read_output(interpreter, output))
    set_input(interpreter, probe, spec.pixel_range)
    while len(times) < MIN_TIMED_RUNS:
        times.append(_timed_invoke(interpreter))
    return np.array(scores, np.float32).reshape(-1, int(output["shape"][-1])), times, detail


def _timed_invoke(interpreter):
    start = time.perf_counter()
    interpreter.invoke()
    return (time.perf_counter() - start) * 1000.0


def check_model(path, evalset, reference_scores, labels, spec, threads=1, progress=True):
    """Checks one .tflite file: it loads, carries the right labels, and agrees with the reference.

    Args:
      path: the model file.
      evalset: the EvalSet (may be empty: then only latency is measured).
      reference_scores: the float model's scores on evalset, (N, classes).
      labels: the labels the file must carry.
      spec: the InputSpec.
      threads: interpreter threads (the reported latency is at this count).

    Returns:
      A Result named after the file's variant.

    Raises:
      ModelError: unreadable or corrupt file, or labels that differ from the model's.
    """
    interpreter = open_model(path, threads)  # first: a truncated file is refused as such, with its path
    info = read_model_info(path)
    if list(info.labels) != list(labels):
        raise ModelError(f"model {path} carries labels {info.labels}, expected {labels}; convert it again")
    check_input(interpreter.get_input_details()[0], path, info.input)
    output = find_outputs(interpreter.get_output_details(), info, len(labels), path).scores
    check_scores(output, len(labels), path)
    scores, times, detail = score_model(interpreter, evalset.pixels, spec, progress, desc=info.variant, output=output)
    result = Result(
        name=info.variant,
        path=str(path),
        bytes=Path(path).stat().st_size,
        latency_ms=statistics.median(times),
        images=len(evalset),
        io=np.dtype(detail["dtype"]).name,
        input_quantization=[float(q) for q in detail["quantization"]],
    )
    if len(evalset):
        if evalset.labels is not None:
            result.accuracy, result.recall = accuracy(scores, evalset.labels, labels)
        result.agreement = agreement(scores, reference_scores)
        result.max_abs_diff = float(np.max(np.abs(scores - reference_scores)))
    return result


def accuracy(scores, truth, labels):
    """Returns (top-1 accuracy, {label: recall}); classes absent from `truth` are left out."""
    report = classification_report(truth, np.argmax(scores, axis=1), labels)
    recall = {name: c["recall"] for name, c in report["per_class"].items() if c["support"]}
    return report["accuracy"], recall


def agreement(scores, reference_scores):
    """Returns the fraction of images whose top-1 class is the same in both."""
    return float(np.mean(np.argmax(scores, axis=1) == np.argmax(reference_scores, axis=1)))


def reference_result(name, path, scores, evalset, labels):
    """The Keras model's own row: accuracy on the same images (agreement 1 by definition)."""
    result = Result(name=name, path=str(path), bytes=_size(path), images=len(evalset))
    if len(evalset):
        if evalset.labels is not None:
            result.accuracy, result.recall = accuracy(scores, evalset.labels, labels)
        result.agreement = 1.0
    return result


def accuracy_drop(results, reference, max_drop):
    """Returns a message when int8 lost more than `max_drop` points against float32, else None.

    The float32 TFLite variant is the baseline when it was checked; otherwise the Keras model.
    """
    int8 = results.get("int8")
    base = results.get("float32") or reference
    if int8 is None or int8.accuracy is None or base.accuracy is None:
        return None
    drop = 100.0 * (base.accuracy - int8.accuracy)
    if drop <= max_drop:
        return None
    return (
        f"int8 accuracy {100 * int8.accuracy:.1f}% is {drop:.1f} points below {base.name} "
        f"({100 * base.accuracy:.1f}%), more than --max-drop {max_drop:g}. Try: more calibration images "
        "(--calib-samples 500), calibration images closer to what the camera sees (--calib-dir), or "
        "--io float32 (float input/output around the int8 body); per-channel quantization is already on"
    )


def _size(path):
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size
