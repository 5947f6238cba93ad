"""One tl-bench measurement (one model at one thread count), run in a fresh process.

`tl-bench` starts `python -m tl.device.bench.worker JOB.json` once per model × threads × round, so
the peak resident memory it reports belongs to that model alone. The worker prints
"P <n>" progress lines on stdout and writes its result as JSON to the file the job names.

A .tflite model is loaded, checked, fed and read exactly as the device does it (`make_interpreter`,
`check_input`, `set_input`, `find_outputs`/`read_output`). TensorFlow is imported only for a Keras job
(the optional "TF/Keras float32" row), never otherwise.
"""

import gc
import importlib
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

from tl.device.errors import ImageError, ModelError, TLError
from tl.device.model import contract
from tl.device.model.image import load_image
from tl.device.model.metadata import find_labels, read_model_info
from tl.device.model.outputs import check_scores, find_outputs, read_output
from tl.device.model.runtime import make_interpreter, runtime_version, uses_edgetpu

log = logging.getLogger(__name__)

# How many progress lines one timed loop emits at most: few enough not to matter, many enough to move the bar.
PROGRESS_STEPS = 20
_SEED = 0


class LiteRunner:
    """A .tflite model behind the three calls the benchmark needs: set_pixels, invoke, scores."""

    kind = "tflite"

    def __init__(self, path, threads, labels_path=None, need_labels=False, edgetpu=None):
        start = time.perf_counter_ns()
        self.interpreter = make_interpreter(path, threads=threads, edgetpu=edgetpu)
        self.load_ns = time.perf_counter_ns() - start
        self.delegate = "Edge TPU" if uses_edgetpu(path, edgetpu) else None
        info = _read_info(path, labels_path, need_labels)
        detail = self.interpreter.get_input_details()[0]
        contract.check_input(detail, path, info.input if info else None)
        self.spec = (info.input if info and info.input else None) or contract.input_spec_from_tensor(detail, path)
        self.labels = list(info.labels) if info else None
        self.variant = info.variant if info else "unknown"
        self.input_desc = f"{self.spec.width}x{self.spec.height} {np.dtype(detail['dtype']).name}"
        self.runtime = runtime_version()
        num_labels = len(self.labels) if self.labels else None  # None: latency only, the scores are unnamed
        self.output = find_outputs(self.interpreter.get_output_details(), info, num_labels, path).scores
        check_scores(self.output, num_labels, path)
        # The interpreter's own invoke, not a wrapper: the timed loop calls exactly what benchmark_model times.
        self.invoke = self.interpreter.invoke

    def set_pixels(self, pixels):
        contract.set_input(self.interpreter, pixels, self.spec.pixel_range)

    def scores(self):
        return read_output(self.interpreter, self.output)


class KerasRunner:
    """A RUN_DIR/model.keras (raw RGB 0..255 in, softmax out), for the "TF/Keras float32" row."""

    kind = "keras"

    def __init__(self, path, threads, labels_path=None, need_labels=False, edgetpu=None):
        tf, keras = _import_keras(threads)
        self._tf = tf
        start = time.perf_counter_ns()
        self.model = keras.models.load_model(path, compile=False)
        self.load_ns = time.perf_counter_ns() - start
        self.delegate = None
        _, height, width, _ = self.model.input_shape
        self.spec = contract.InputSpec(height=int(height), width=int(width))
        self.labels = find_labels(path, labels_path, required=need_labels)
        self.variant = "keras"
        self.input_desc = f"{width}x{height} float32"
        self.runtime = f"tensorflow {tf.__version__} / keras {keras.__version__}"
        self._x = self._out = None

    def set_pixels(self, pixels):
        self._x = self._tf.constant(pixels[None].astype(np.float32))

    def invoke(self):
        # A direct call, not model.predict: predict builds a dataset per call, which no device would pay.
        self._out = self.model(self._x, training=False)

    def scores(self):
        return np.asarray(self._out)[0].astype(np.float32)


def _import_keras(threads):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Only for a model.keras row, in its own worker process: tl.device itself never imports TensorFlow,
    # and importlib keeps that visible to the project's import checks.
    try:
        tf = importlib.import_module("tensorflow")
        keras = importlib.import_module("keras")
    except ImportError as e:
        raise ModelError(
            "the TF/Keras float32 row needs TensorFlow, which is not installed here; "
            "install it with pip install 'tl-edge[train]' or leave model.keras out"
        ) from e
    # Threads must be set before TensorFlow runs anything; this process is fresh, so they can be.
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    return tf, keras


def _read_info(path, labels_path, need_labels):
    """Embedded labels first; `labels_path` stands in for models that carry none."""
    try:
        return read_model_info(path)
    except ModelError:
        if labels_path:
            return read_model_info(path, labels_path)
        if need_labels:
            raise
        log.info("model %s carries no labels; measuring latency only", path)
        return None


def make_runner(job):
    """Loads the job's model (timed inside the runner) and returns its runner."""
    cls = KerasRunner if job["kind"] == "keras" else LiteRunner
    return cls(job["model"], job["threads"], job.get("labels"), bool(job["samples"]), job.get("edgetpu"))


def memory_mb():
    """(current, peak) resident memory of this process in MiB, from /proc/self/status.

    Not `ru_maxrss`: on Linux a child's ru_maxrss starts at its parent's high-water mark (the
    forked copy counts before exec), which would hide the model behind tl-bench's own memory.
    Returns (None, None) where /proc is missing (not Linux).
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024
    except (OSError, KeyError, ValueError):
        return None, None


def reset_peak_memory():
    """Resets the peak-RSS mark to the current RSS, so the import-time peak is not the model's (Linux ≥ 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
    except OSError:
        log.debug("cannot reset the peak-RSS mark; the peak includes start-up")


def report_progress(steps):
    """Tells the parent that `steps` more units of work are done (one line on stdout)."""
    print(f"P {steps}", flush=True)


def first_input(runner, samples):
    """The pixels every timed invoke sees: the first readable data image, else seeded noise."""
    for path, _ in samples:
        try:
            return contract.prepare_image(load_image(path), runner.spec)
        except ImageError:
            continue
    rng = np.random.default_rng(_SEED)
    return rng.integers(0, 256, (runner.spec.height, runner.spec.width, 3), dtype=np.uint8)


def time_invokes(invoke, runs):
    """Times `runs` calls of `invoke` with perf_counter_ns; returns the durations in ns."""
    samples = np.empty(runs, dtype=np.int64)
    step = max(1, runs // PROGRESS_STEPS)
    # A garbage collection pause would land inside one sample and fake a p99 outlier.
    gc.disable()
    try:
        for i in range(runs):
            start = time.perf_counter_ns()
            invoke()
            samples[i] = time.perf_counter_ns() - start
            if (i + 1) % step == 0 or i + 1 == runs:
                report_progress(step if (i + 1) % step == 0 else (i + 1) % step)
    finally:
        gc.enable()
    return samples


def run_data_pass(runner, samples):
    """Decode + preprocess + invoke over the data images: predictions and end-to-end time.

    Returns:
      (predictions, skipped, seconds): the predicted label (or output index) per sample, None
      where the image could not be decoded; [path, reason] per skipped image; time spent on the
      images that were classified.
    """
    predictions, skipped, total_ns = [], [], 0
    for path, _ in samples:
        start = time.perf_counter_ns()
        try:
            pixels = contract.prepare_image(load_image(path), runner.spec)
        except ImageError as e:
            predictions.append(None)
            skipped.append([str(path), e.reason])
            report_progress(1)
            continue
        runner.set_pixels(pixels)
        runner.invoke()
        best = int(np.argmax(runner.scores()))
        total_ns += time.perf_counter_ns() - start
        predictions.append(runner.labels[best] if runner.labels else str(best))
        report_progress(1)
    return predictions, skipped, total_ns / 1e9


def measure(job):
    """Runs one job: load, first inference, warm-up, timed invokes, data pass, memory."""
    rss_base, _ = memory_mb()
    reset_peak_memory()
    runner = make_runner(job)
    report_progress(1)
    runner.set_pixels(first_input(runner, job["samples"]))
    start = time.perf_counter_ns()
    runner.invoke()
    first_ns = time.perf_counter_ns() - start
    for _ in range(job["warmup"]):
        runner.invoke()
    report_progress(job["warmup"])
    latency_ns = time_invokes(runner.invoke, job["runs"])
    predictions, skipped, e2e_s = run_data_pass(runner, job["samples"])
    return {
        "ok": True, "kind": runner.kind, "variant": runner.variant, "input": runner.input_desc,
        "spec": runner.spec.to_dict(), "labels": runner.labels, "runtime": runner.runtime,
        "delegate": runner.delegate, "load_ms": runner.load_ns / 1e6, "first_ms": first_ns / 1e6,
        "latency_ns": latency_ns.tolist(), "predictions": predictions, "skipped": skipped,
        "e2e_s": e2e_s, "rss_base_mb": rss_base, "peak_rss_mb": memory_mb()[1],
    }


def main(job_path):
    """Runs the job in `job_path` and writes its result file; errors become {"ok": false}."""
    job = json.loads(Path(job_path).read_text(encoding="utf-8"))
    try:
        result = measure(job)
    except TLError as e:
        result = {"ok": False, "error": str(e)}
    except Exception as e:
        # Reported in the model's row ("failed: ..."); the parent runs the other models regardless.
        result = {"ok": False, "error": f"model {job['model']}: {type(e).__name__}: {e}"}
    Path(job["result"]).write_text(json.dumps(result), encoding="utf-8")


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    main(sys.argv[1])
