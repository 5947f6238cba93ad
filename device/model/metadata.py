"""Self-describing models: labels and input spec travel inside each .tflite file.

The way TFLite metadata carries associated files (and Ultralytics its export metadata), the extra
files are a ZIP archive appended to the FlatBuffer: interpreters ignore the trailing bytes, and
`zipfile` finds the archive from the end of the file. Reading needs nothing beyond the standard library.

Inside the archive: `labels.txt` (one label per line, in output order), `tl_edge.json`
(format version, variant, input spec, and anything else the writer adds), and any further files
the writer adds (`openset.npz`: the open-set statistics, see `tl.device.recognition.openset`).
"""

import dataclasses
import io
import json
import logging
import zipfile
from pathlib import Path

from tl.device.errors import ModelError
from tl.device.model.contract import InputSpec

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
LABELS_NAME = "labels.txt"
INFO_NAME = "tl_edge.json"
# A TFLite FlatBuffer carries this file identifier at bytes 4..8.
TFLITE_IDENT = b"TFL3"


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
    """

    labels: list
    input: InputSpec
    variant: str = "float32"
    task: str = "classification"
    extra: dict = dataclasses.field(default_factory=dict)
    files: dict = dataclasses.field(default_factory=dict)
    operating_points: dict = dataclasses.field(default_factory=dict)
    calibration: dict = dataclasses.field(default_factory=dict)

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


def embed_model_info(model_bytes, info):
    """Returns the TFLite model bytes with `info` appended as a ZIP archive.

    Any archive already appended (an older tl-edge info) is replaced, so this is idempotent.
    """
    model_bytes = strip_model_info(bytes(model_bytes))
    buf = io.BytesIO()
    buf.write(model_bytes)
    with zipfile.ZipFile(buf, mode="a", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr(LABELS_NAME, "\n".join(info.labels) + "\n")
        zf.writestr(INFO_NAME, json.dumps(info.to_json(), indent=2))
        for name, data in sorted(info.files.items()):
            zf.writestr(name, data)
    return buf.getvalue()


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
    """Reads the labels and input spec carried inside a .tflite file.

    Args:
      path: the .tflite model.
      labels_path: optional labels file that overrides (or stands in for missing) embedded labels.

    Returns:
      ModelInfo.

    Raises:
      ModelError: when the file is not a TFLite model or carries no labels and none were given.
    """
    check_tflite(path)
    labels, meta, files = None, None, {}
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            if LABELS_NAME in names:
                labels = zf.read(LABELS_NAME).decode("utf-8").split("\n")
                labels = [x.strip() for x in labels if x.strip()]
            if INFO_NAME in names:
                meta = json.loads(zf.read(INFO_NAME).decode("utf-8"))
                files = {n: zf.read(n) for n in names if n not in (LABELS_NAME, INFO_NAME)}
    except zipfile.BadZipFile:
        pass  # a plain FlatBuffer: no embedded info, handled below
    if labels_path is not None:
        labels = read_labels(labels_path)
    if not labels:
        raise ModelError(
            f"model {path} carries no labels; re-export it with tl-convert (labels travel inside "
            "the file) or pass --labels LABELS.txt"
        )
    if meta is None:
        return ModelInfo(labels=labels, input=None, variant="unknown", extra={})
    if meta.get("format", 0) > FORMAT_VERSION:
        raise ModelError(f"model {path} was written by a newer tl-edge (format {meta['format']}); upgrade tl-edge")
    return ModelInfo(
        labels=labels,
        input=InputSpec.from_dict(meta["input"]),
        variant=meta.get("variant", "unknown"),
        task=meta.get("task", "classification"),
        extra=meta.get("extra", {}),
        files=files,
        operating_points=_operating_points(meta.get("operating_points"), labels, path),
        calibration=meta.get("calibration") or {},
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
