"""Self-describing models: labels, input spec and tl-edge's facts travel inside each .tflite file.

Two layers, both read with the standard library and the `flatbuffers` package (no TensorFlow):

- the standard TFLite metadata record (`TFLITE_METADATA`, see `tl.device.model.tflite_metadata`):
  name, description, version, author, the input's normalisation, the output's labels as an associated
  file of type TENSOR_AXIS_LABELS. MediaPipe Tasks, the Android Task Library and Coral's examples read it;
- the associated files, a ZIP archive appended to the FlatBuffer (interpreters ignore trailing bytes,
  `zipfile` finds the archive from the end): `labels.txt` (one label per line, in output order),
  `tl_edge.json` (format version, variant, input spec, calibration, open-set and operating-point facts),
  and further files the writer adds (`openset.npz`: the open-set statistics).

Files written before the standard record (the ZIP alone) are still read; so are other tools' models
that carry only the standard record (Google's Coral models: labels from their own label file).
"""

import dataclasses
import io
import json
import logging
import mmap
import zipfile
from pathlib import Path

from tl.device.errors import ModelError
from tl.device.model import tflite_metadata as std
from tl.device.model.contract import PIXEL_RANGES, InputSpec
from tl.device.model.tflite_model import io_tensors

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
LABELS_NAME = "labels.txt"
INFO_NAME = "tl_edge.json"
# A TFLite FlatBuffer carries this file identifier at bytes 4..8.
TFLITE_IDENT = b"TFL3"
SCORES, EMBEDDING = "scores", "embedding"  # tl-convert's output names


@dataclasses.dataclass
class ModelInfo:
    """What a device needs to know about a model besides its tensors.

    Attributes:
      labels: class names in output order.
      input: the InputSpec (size, colour order, resize rule, pixel range).
      variant: "float32", "float16", "dynamic", "int8", or "keras".
      task: "classification" or "embedding".
      extra: anything else (training run, calibration summary...), free-form JSON.
      files: {name: bytes} of further files carried in the archive (binary data JSON would bloat).
      operating_points: {class: threshold} chosen by tl-train on held-out images for a stated target
        (see `calibration`); empty when the model carries none.
      calibration: how the scores were calibrated and the operating points chosen (temperature,
        target, source), plain JSON; empty when unknown.
      metadata: the standard TFLite metadata record read from the file (a StandardMetadata), or None.
    """

    labels: list
    input: InputSpec
    variant: str = "float32"
    task: str = "classification"
    extra: dict = dataclasses.field(default_factory=dict)
    files: dict = dataclasses.field(default_factory=dict)
    operating_points: dict = dataclasses.field(default_factory=dict)
    calibration: dict = dataclasses.field(default_factory=dict)
    metadata: object = None

    def to_json(self):
        out = {
            "format": FORMAT_VERSION,
            "variant": self.variant,
            "task": self.task,
            "input": self.input.to_dict(),
            "num_labels": len(self.labels),
            "extra": self.extra,
        }
        if self.operating_points:
            out["operating_points"] = {str(k): float(v) for k, v in self.operating_points.items()}
        if self.calibration:
            out["calibration"] = self.calibration
        return out


def read_labels(path):
    """Reads a labels file: one label per line, blank lines ignored."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ModelError(f"labels file {path}: cannot read ({e.strerror})") from e
    labels = [line.strip() for line in text.splitlines() if line.strip()]
    if not labels:
        raise ModelError(f"labels file {path} is empty; it needs one class name per line")
    return labels


def find_labels(model_path, labels_path=None, required=False):
    """The labels of a model file that does not carry them: `labels_path`, else labels.txt beside the model.

    The one place that looks for "labels.txt beside the model" (tl-convert's model files, tl-bench's
    model.keras row).

    Args:
      model_path: the model file.
      labels_path: a labels file given by the user (--labels); it wins, and must be readable.
      required: raise when there is none, instead of returning None.

    Returns:
      The labels, or None when there is no labels file and they are not required.

    Raises:
      ModelError: an unreadable or empty labels file, or none found when required (the message says
        how to give one).
    """
    if labels_path is not None:
        return read_labels(labels_path)
    beside = Path(model_path).parent / LABELS_NAME
    if beside.is_file():
        log.info("labels: %s (beside the model)", beside)
        return read_labels(beside)
    if required:
        raise ModelError(f"model {model_path} carries no labels; pass --labels FILE with one class name per line, "
                         f"in the model's output order (or put {LABELS_NAME} beside the model)")
    return None


def embed_model_info(model_bytes, info, about=None):
    """Returns the TFLite model bytes with the standard metadata record and `info`'s files attached.

    Any tl-edge archive already appended, and any TFLITE_METADATA record, are replaced, so this is
    idempotent.

    Args:
      model_bytes: a .tflite FlatBuffer (with or without an older tl-edge archive).
      info: the ModelInfo to carry.
      about: a StandardMetadata holding the model's name, description, version, author and licence
        (None: a name made from the labels); its tensors and files are filled in here.
    """
    model_bytes = strip_model_info(bytes(model_bytes))
    record = standard_record(info, model_bytes, about)
    buf = io.BytesIO()
    buf.write(std.attach(model_bytes, record))
    # Stored, not deflated: MediaPipe's and the Task Library's readers take uncompressed members only.
    with zipfile.ZipFile(buf, mode="a", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr(LABELS_NAME, "\n".join(info.labels) + "\n")
        zf.writestr(INFO_NAME, json.dumps(info.to_json(), indent=2))
        for name, data in sorted(info.files.items()):
            zf.writestr(name, data)
    return buf.getvalue()


def standard_record(info, model_bytes, about=None):
    """The StandardMetadata that describes a model and `info` the way other runtimes expect.

    The input: an RGB image, with NormalizationOptions when it is float (uint8 takes 0..255 as it is).
    The scores output: class probabilities, labels.txt attached as its TENSOR_AXIS_LABELS. The
    embedding output (tl-convert's second output): a unit vector. tl-edge's own files: model-level.
    """
    inputs, outputs = io_tensors(model_bytes)
    about = about or std.StandardMetadata(name=_default_name(info), author="tl-edge")
    roles = _output_roles(info, outputs)
    return dataclasses.replace(
        about,
        inputs=[_input_record(t, info.input) for t in inputs],
        outputs=[_output_record(t, role, info) for t, role in zip(outputs, roles)],
        files=_model_files(info, labels_on_output=SCORES in roles),
    )


def _default_name(info):
    return f"{' / '.join(info.labels[:4])}{' / …' if len(info.labels) > 4 else ''} {info.task}"


def _output_roles(info, outputs):
    """SCORES, EMBEDDING or "" for each output, by the names tl-convert recorded, else by position."""
    named = {v: k for k, v in (info.extra.get("outputs") or {}).items()}
    if named:
        return [named.get(t.name, "") for t in outputs]
    first = EMBEDDING if info.task == "embedding" else SCORES
    return [first] + [""] * (len(outputs) - 1)


def _input_record(tensor, spec):
    where = f"{tensor.shape[2]}x{tensor.shape[1]}" if len(tensor.shape) == 4 else "any size"
    resize = f", {spec.resize} resize" if spec is not None else ""
    record = std.TensorInfo(name="image", description=f"RGB image, {where}{resize}, pixels 0..255", content="image",
                            min=[0.0], max=[255.0])
    if tensor.dtype == "float32":  # uint8 inputs take raw pixels; float ones say how pixels become values
        low, high = PIXEL_RANGES[spec.pixel_range if spec is not None else "0..255"]
        record.mean, record.std = [-low * 255.0 / (high - low)], [255.0 / (high - low)]
    return record


def _output_record(tensor, role, info):
    if role == SCORES:
        return std.TensorInfo(
            name=SCORES, description=f"Probability of each of the {len(info.labels)} classes", content="feature",
            min=[0.0], max=[1.0],
            files=[std.AssociatedFile(LABELS_NAME, "Class names, one per line, in output order",
                                      std.TENSOR_AXIS_LABELS)])
    if role == EMBEDDING:
        dim = tensor.shape[-1] if tensor.shape else "?"
        return std.TensorInfo(name=EMBEDDING, content="feature", min=[-1.0], max=[1.0],
                              description=f"Unit-length {dim}-d image embedding (open-set rejection, enrolment)")
    return std.TensorInfo(name=tensor.name)


def _model_files(info, labels_on_output):
    files = [] if labels_on_output else [std.AssociatedFile(LABELS_NAME, "Class names of the training run")]
    files.append(std.AssociatedFile(INFO_NAME, "tl-edge facts: variant, input spec, calibration, open-set and "
                                    "operating points (JSON)"))
    files += [std.AssociatedFile(name, "tl-edge data") for name in sorted(info.files)]
    return files


def strip_model_info(model_bytes):
    """Returns the FlatBuffer part of a model, without an appended tl-edge archive."""
    try:
        with zipfile.ZipFile(io.BytesIO(model_bytes)) as zf:
            if INFO_NAME not in zf.namelist():
                return model_bytes
            # zipfile shifts header offsets by the bytes in front of the archive, so the first
            # local header's offset is where the FlatBuffer ends.
            return model_bytes[: min(i.header_offset for i in zf.infolist())]
    except zipfile.BadZipFile:
        return model_bytes


def check_tflite(path):
    """Refuses a file that is not a TFLite FlatBuffer, naming it.

    Raises:
      ModelError: missing, empty, truncated, or not a .tflite model.
    """
    path = Path(path)
    try:
        with path.open("rb") as f:
            head = f.read(8)
        size = path.stat().st_size
    except OSError as e:
        raise ModelError(f"model {path}: cannot read ({e.strerror}); check the path") from e
    if size < 16 or head[4:8] != TFLITE_IDENT:
        raise ModelError(
            f"model {path} is not a TFLite model (no TFL3 identifier, {size} bytes); "
            "export one with tl-convert, or copy the file again if the transfer was cut short"
        )


def read_model_info(path, labels_path=None):
    """Reads the labels, input spec and metadata carried inside a .tflite file.

    Labels come from `labels_path` when given, else from the file standard metadata names as the
    scores output's TENSOR_AXIS_LABELS, else from tl-edge's `labels.txt` (files written before the
    standard record). Each label file line is one output, in order (Coral's line 0 "background" included).

    Args:
      path: the .tflite model.
      labels_path: optional labels file that overrides (or stands in for missing) embedded labels.

    Returns:
      ModelInfo (input None when the file has no tl-edge info: the input tensor tells the rest).

    Raises:
      ModelError: when the file is not a TFLite model or carries no labels and none were given.
    """
    check_tflite(path)
    # Mapped, not read: the record sits near the front and the archive at the end of a multi-MB file.
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        record = _read_record(data, path)
    files = _archive(path)
    meta = json.loads(files.pop(INFO_NAME).decode("utf-8")) if INFO_NAME in files else None
    if labels_path is not None:
        labels = read_labels(labels_path)
    else:
        labels = _embedded_labels(record, files, path)
    if not labels:
        raise ModelError(
            f"model {path} carries no labels (no TENSOR_AXIS_LABELS file in its metadata); re-export it with "
            "tl-convert (labels travel inside the file) or pass --labels LABELS.txt"
        )
    files.pop(LABELS_NAME, None)
    if meta is None:
        return ModelInfo(labels=labels, input=None, variant="unknown", extra={}, files=files, metadata=record)
    if meta.get("format", 0) > FORMAT_VERSION:
        raise ModelError(f"model {path} was written by a newer tl-edge (format {meta['format']}); upgrade tl-edge")
    # Keys this reader does not know (a newer writer's) are left in the file, not refused.
    return ModelInfo(
        labels=labels,
        input=InputSpec.from_dict(meta["input"]) if meta.get("input") else None,
        variant=meta.get("variant", "unknown"),
        task=meta.get("task", "classification"),
        extra=meta.get("extra", {}),
        files=files,
        operating_points=_operating_points(meta.get("operating_points"), labels, path),
        calibration=meta.get("calibration") or {},
        metadata=record,
    )


def _operating_points(points, labels, path):
    """{class: threshold} of a model's info, checked against its labels (unknown classes are refused)."""
    if not points:
        return {}
    unknown = sorted(set(points) - set(labels))
    if unknown:
        raise ModelError(f"model {path}: operating points for {', '.join(unknown)}, which are not among its labels "
                         f"({', '.join(labels)}); convert it again with tl-convert")
    return {c: float(points[c]) for c in labels if c in points}


def read_operating_points(path):
    """The per-class thresholds a .tflite model carries ({class: threshold}; {} when it carries none).

    tl-train chose them on held-out images so that at most a stated share of other classes' images
    reach each class's threshold; `read_model_info(path).calibration` says which share and from where.
    """
    return read_model_info(path).operating_points


def _read_record(data, path):
    try:
        return std.read_standard_metadata(data, f"model {path}")
    except ModelError as e:
        # The interpreter runs the model all the same; tl-edge's own archive may still say enough.
        log.warning("%s; reading the model without it", e)
        return None


def _archive(path):
    """{name: bytes} of the ZIP appended to a model ({} when there is none)."""
    try:
        with zipfile.ZipFile(path) as zf:
            return {n: zf.read(n) for n in zf.namelist()}
    except (zipfile.BadZipFile, OSError, EOFError):
        return {}


def _embedded_labels(record, files, path):
    name = None
    if record is not None:
        name = next((t.labels_file() for t in record.outputs if t.labels_file()), None)
        if name is not None and name not in files:
            log.warning("model %s: its metadata names label file %s, which is not in the file", path, name)
            name = None
    name = name or (LABELS_NAME if LABELS_NAME in files else None)
    return _label_lines(files[name]) if name else None


def _label_lines(data):
    """One label per line, positions kept (a blank line inside stays a class); trailing blank lines dropped."""
    lines = [line.strip() for line in data.decode("utf-8", "replace").splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def pixel_range_from_metadata(record):
    """The InputSpec pixel range a float input's NormalizationOptions say, or None when they say nothing known.

    value = (pixel - mean) / std maps pixels 0..255 onto a range; the nearest of PIXEL_RANGES is taken.
    """
    if record is None or not record.inputs or not record.inputs[0].mean or not record.inputs[0].std:
        return None
    mean, sd = record.inputs[0].mean[0], record.inputs[0].std[0]
    if not sd:
        return None
    low, high = (0.0 - mean) / sd, (255.0 - mean) / sd
    best = min(PIXEL_RANGES, key=lambda r: abs(PIXEL_RANGES[r][0] - low) + abs(PIXEL_RANGES[r][1] - high))
    lo, hi = PIXEL_RANGES[best]
    return best if abs(lo - low) + abs(hi - high) < 0.05 * (hi - lo) else None
