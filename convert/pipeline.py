"""tl-convert's steps, in order: load, calibrate, convert each variant, check each file, report.

The CLI parses options and prints; everything else is here, so benchmarks and tests can run it too.
"""

import dataclasses
import datetime
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from tl.convert import calibration as calib
from tl.convert import check, edgetpu, export, portable, report
from tl.convert import openset as oset
from tl.convert.embedding import build_graphs
from tl.convert.reference import Reference
from tl.convert.source import eval_samples, resolve_spec
from tl.convert.variants import DEFAULT_IO, Quantization, file_name
from tl.device.data.atomic import check_writable, write_text
from tl.device.data.sysinfo import machine_info
from tl.device.errors import DataError
from tl.device.model.metadata import LABELS_NAME
from tl.device.model.runtime import runtime_version
from tl.train.quiet import import_tensorflow

log = logging.getLogger(__name__)

DEFAULT_MAX_DROP = 1.0
CLASSIFIER = "model"  # file prefix of the classifier graph; a second graph (an embedder) gets its own
EMBEDDER = "embedder"
EMBEDDER_VARIANTS = ("int8", "float32")  # what a device enrols with; float16/dynamic add nothing there


@dataclasses.dataclass
class Options:
    """What to convert and how to check it (the CLI's options, with the same defaults)."""

    variants: tuple = ("int8",)
    io: str = DEFAULT_IO
    calib_dir: Path = None
    calib_samples: int = calib.DEFAULT_SAMPLES
    seed: int = calib.DEFAULT_SEED
    eval_dir: Path = None
    max_drop: float = DEFAULT_MAX_DROP
    threads: int = 1
    edgetpu: bool = False
    check_only: bool = False
    progress: bool = True
    embedding: bool = False
    openset: bool = True
    frigate: Path = None


@dataclasses.dataclass
class Outcome:
    """What a run produced: one Result per row (the Keras model first), the report, the verdict."""

    results: list
    report: dict
    json_path: Path
    drop_message: str = None


@dataclasses.dataclass
class Graph:
    """One graph to export as <prefix>_<variant>.tflite files.

    The classifier, and with --embedding the embedding extractor (a sub-model of the same Keras
    model, task "embedding"), go through the same `export_graph`.

    Attributes:
      finish: None, or a callable (model_bytes, quantization) -> (model_bytes, extra, files) run on
        each converted variant before it is written (see `tl.convert.openset`).
    """

    reference: Reference
    labels: list
    prefix: str = CLASSIFIER
    task: str = "classification"
    finish: object = None
    scores: dict = None


def run(source, options, echo=print):
    """Converts and checks the asked variants of `source`; writes the files and convert.json.

    Args:
      source: a `tl.convert.source.Source`.
      options: Options.
      echo: prints one line for the user.

    Returns:
      Outcome. Its `drop_message` is set when int8 lost more than `options.max_drop` points.
    """
    start = time.perf_counter()
    out_dir = check_writable(source.out_dir)
    echo(f"loading {source.model_path}")
    reference = Reference(source.model_path)
    spec = resolve_spec(source, reference)
    if options.frigate is not None:
        portable.check_frigate(spec, options.io)
    quantizations = [Quantization.named(v, options.io) for v in options.variants]
    calibration, timings = None, {}
    if not options.check_only and any(q.needs_calibration for q in quantizations):
        calibration = _calibration(source, spec, options)
        echo(calibration.describe())
    evalset = _evaluation_set(source, spec, options, calibration, echo)
    ref_scores = reference.predict(evalset.pixels)
    embedder, embedder_paths = None, {}
    if options.check_only:
        paths = {q.variant: out_dir / file_name(q.variant, CLASSIFIER) for q in quantizations}
    else:
        graph, embedder = _graphs(source, reference, spec, options, calibration, evalset)
        paths = export_graph(graph, spec, quantizations, calibration, out_dir, {"source": source.describe()},
                             options.progress, echo, timings)
        if embedder is not None:
            asked = [q for q in quantizations if q.variant in EMBEDDER_VARIANTS] or [Quantization.float32()]
            embedder_paths = export_graph(embedder, spec, asked, calibration, out_dir, {"source": source.describe()},
                                          options.progress, echo, timings)
    ref_name = "savedmodel" if reference.kind == "saved_model" else "keras"
    ref_row = check.reference_result(ref_name, source.model_path, ref_scores, evalset, source.labels)
    results = {
        variant: check.check_model(path, evalset, ref_scores, source.labels, spec, options.threads, options.progress)
        for variant, path in paths.items()
    }
    edgetpu_report = _inspect_int8(results, options, echo)
    portables = None if options.check_only else portable.write_all(paths, options.frigate, echo)
    _write_labels(out_dir, source.labels)
    drop = check.accuracy_drop(results, ref_row, options.max_drop)
    record = _record(source, spec, options, evalset, calibration, ref_row, results, timings, edgetpu_report, drop)
    record["openset"] = oset.check_all(paths, evalset, source.labels, echo)
    record["portable"] = portables
    if embedder_paths:
        record["embedder"] = {v: oset.check_embedder(p, evalset, embedder.reference) for v, p in embedder_paths.items()}
    record["timings"]["total_s"] = round(time.perf_counter() - start, 1)
    json_path = report.write_report(out_dir, record)
    return Outcome([ref_row, *results.values()], record, json_path, drop)


def export_graph(graph, spec, quantizations, calibration, out_dir, extra, progress=True, echo=print, timings=None):
    """Converts one graph into each asked variant, writing <prefix>_<variant>.tflite atomically.

    One SavedModel export serves every variant.

    Args:
      graph: the Graph.
      spec: its InputSpec.
      quantizations: the Quantization of each variant.
      calibration: the Calibration (needed for int8).
      out_dir: where the files go.
      extra: provenance to carry in every file's metadata.
      progress, echo: progress bars, and where to say what is happening.
      timings: a dict to add conversion seconds to.

    Returns:
      {variant: path written}.
    """
    paths, timings = {}, timings if timings is not None else {}
    with tempfile.TemporaryDirectory(prefix="tl-convert-") as tmp:
        saved_model = graph.reference.saved_model(Path(tmp) / "saved_model", spec.height, spec.width)
        for q in quantizations:
            t = time.perf_counter()
            what = q.variant if graph.prefix == CLASSIFIER else f"{graph.prefix} {q.variant}"
            echo(f"converting {what}" + (f" ({q.io} input/output)" if q.variant == "int8" else ""))
            model_bytes = export.convert(saved_model, q, calibration, progress=progress)
            info_extra, files = dict(extra), {}
            if graph.finish is not None:  # outputs named, open-set statistics attached (tl.convert.openset)
                model_bytes, more, files = graph.finish(model_bytes, q)
                info_extra.update(more)
            if q.needs_calibration:
                info_extra.update(io=q.io, calibration=calibration.summary())
            info = export.model_info(graph.labels, spec, q.variant, info_extra, task=graph.task)
            info.files = files
            if graph.scores:
                info.operating_points, info.calibration = graph.scores["operating_points"], graph.scores["calibration"]
            path = out_dir / file_name(q.variant, graph.prefix)
            export.write_model(path, model_bytes, info)
            timings[f"convert_{graph.prefix}_{q.variant}_s"] = round(time.perf_counter() - t, 1)
            paths[q.variant] = path
    return paths


def _graphs(source, reference, spec, options, calibration, evalset):
    """The classifier Graph (with an embedding output when there are open-set statistics or --embedding)
    and the embedder Graph (with --embedding, else None)."""
    stats = oset.load_run_stats(source) if options.openset else None
    scores = run_scores(source)
    if stats is None and not options.embedding:
        return Graph(reference, source.labels, scores=scores), None
    if reference.keras_model is None:
        raise DataError(f"--embedding needs a Keras model (.keras/.h5 or a tl-train RUN_DIR); {source.model_path} "
                        "is a SavedModel")
    both, embedder = build_graphs(reference.keras_model, source.model_path, spec)
    pixels = calibration.pixels if calibration is not None else evalset.pixels
    graph = Graph(both, source.labels, finish=oset.classifier_finish(both, stats, pixels), scores=scores)
    if not options.embedding:
        return graph, None
    return graph, Graph(embedder, source.labels, EMBEDDER, "embedding", oset.embedder_finish(embedder, stats))


def run_scores(source):
    """The calibration and operating points a tl-train run recorded (train.json), or None.

    The temperature is already inside the model's weights; this carries the thresholds chosen on the
    run's held-out images, and how, into each converted file.
    """
    record = source.run.record if source.run is not None else {}
    ops = record.get("operating_points")
    if not ops or not ops.get("thresholds"):
        return None
    temperature = record.get("calibration") or {}
    return {"operating_points": dict(ops["thresholds"]),
            "calibration": {"temperature": temperature.get("temperature"), "method": temperature.get("method"),
                            "target": ops.get("target"), "floor": ops.get("floor"), "source": ops.get("source"),
                            "per_class": ops.get("per_class"), "note": "temperature folded into the model's logits; "
                            "each threshold: at most `target` of held-out images of other classes reach it"}}


def _evaluation_set(source, spec, options, calibration, echo):
    """The images each variant is checked on: labelled if possible, else the calibration images."""
    samples, where = eval_samples(source, options.eval_dir)
    evalset = check.load_eval_set(samples, spec, where, options.progress)
    if len(evalset):
        echo(f"evaluation: {len(evalset)} images from {where}" + _skipped_note(evalset.skipped))
    elif calibration is not None:
        # Unlabelled, but agreement with the float model still catches a broken conversion.
        evalset = check.EvalSet(calibration.pixels, None, [], evalset.skipped, f"calibration images of {calibration.folder}")
        echo("evaluation: no labelled images (pass --eval-dir DIR); measuring agreement on the calibration images")
    else:
        echo("evaluation: no labelled images (pass --eval-dir DIR); checking that the files load and timing them")
    return evalset


def _calibration(source, spec, options):
    folder = options.calib_dir or source.default_calib_dir
    if folder is None:
        raise DataError("int8 needs calibration images and none are recorded for this model; pass --calib-dir DIR")
    if options.calib_dir is None and not Path(folder).is_dir():
        raise DataError(
            f"the training images recorded in train.json ({folder}) are gone; int8 needs calibration images: "
            "pass --calib-dir DIR"
        )
    return calib.load_calibration(folder, spec, options.calib_samples, options.seed, source.labels,
                                  options.progress)


def _inspect_int8(results, options, echo):
    """Names int8 ops left in float, checks the input quantization, and runs --edgetpu."""
    r = results.get("int8")
    if r is None:
        return None
    ops = edgetpu.list_ops(r.path)
    fallbacks = edgetpu.float_ops(ops)
    r.float_ops = [f"{op.name}#{op.index}" for op in fallbacks]
    if fallbacks:
        log.warning("int8: %d op(s) have no int8 kernel and run in float: %s", len(fallbacks),
                    edgetpu.summarize_ops(fallbacks))
    _check_input_range(r)
    if not options.edgetpu:
        return None
    unmapped = edgetpu.edgetpu_unmapped(ops)
    if unmapped:
        echo(f"edgetpu: these ops would run on the CPU, not the Edge TPU: {edgetpu.summarize_ops(unmapped)}")
    else:
        echo(f"edgetpu: all {len(ops)} ops are int8 and on the Edge TPU's list")
    entry = {"compiled": False, "cpu_ops": [f"{op.name}#{op.index}" for op in unmapped]}
    compiler = edgetpu.find_compiler()
    if compiler is None:
        log.warning(edgetpu.INSTALL_HINT)
        return dict(entry, reason="edgetpu_compiler not installed")
    out, compiler_log = edgetpu.compile_edgetpu(r.path, compiler)
    echo(f"edgetpu: wrote {out}")
    return dict(entry, compiled=True, path=str(out), bytes=out.stat().st_size, log=compiler_log)


def _check_input_range(result):
    """Warns when the int8 input does not cover 0..255 (calibration images of a narrow range)."""
    scale, zero = result.input_quantization
    if result.io not in ("uint8", "int8") or not scale:
        return
    info = np.iinfo(result.io)
    lo, hi = scale * (info.min - zero), scale * (info.max - zero)
    if lo > 0.5 or hi < 254.5:
        log.warning(
            "int8 input covers pixel values %.0f..%.0f only (scale %.4g, zero point %d): the calibration images "
            "are narrower than what a camera sees, so darker/brighter pixels are clipped. Calibrate on more "
            "varied photos (--calib-dir)", lo, hi, scale, zero,
        )


def _write_labels(out_dir, labels):
    path = Path(out_dir) / LABELS_NAME
    text = "\n".join(labels) + "\n"
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        write_text(path, text)


def _skipped_note(skipped):
    return f" (skipped {len(skipped)} unusable file(s))" if skipped else ""


def _skipped_json(items):
    return [{"path": s.path, "reason": s.reason} for s in items]


def _record(source, spec, options, evalset, calibration, ref_row, results, timings, edgetpu_report, drop):
    tf, keras = import_tensorflow()
    return {
        "created": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "source": source.describe(),
        "labels": list(source.labels),
        "input": spec.to_dict(),
        "calibration": dict(calibration.summary(), skipped=_skipped_json(calibration.skipped)) if calibration else None,
        "eval": {"from": evalset.where, "images": len(evalset), "skipped": _skipped_json(evalset.skipped)},
        "reference": ref_row.to_json(),
        "variants": {name: r.to_json() for name, r in results.items()},
        "max_drop": options.max_drop,
        "accuracy_drop_ok": drop is None,
        "edgetpu": edgetpu_report,
        "timings": dict(timings),
        "threads": options.threads,
        "machine": machine_info(),
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__, "runtime": runtime_version()},
    }

