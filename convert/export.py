"""Converting a SavedModel into one TFLite variant, and writing it as a self-describing file."""

import hashlib
import logging

from tl.device import __version__
from tl.device.data.atomic import write_bytes
from tl.device.errors import TLError
from tl.device.model import tflite_metadata as std
from tl.device.model.metadata import ModelInfo, embed_model_info
from tl.train.quiet import import_tensorflow, quiet_native_stderr

log = logging.getLogger(__name__)


class ConvertError(TLError, RuntimeError):
    """The TFLite converter could not convert the model; the message names the op."""


def convert(saved_model_dir, quantization, calibration=None, progress=True):
    """Converts a SavedModel into TFLite FlatBuffer bytes.

    Args:
      saved_model_dir: the SavedModel folder (see `Reference.saved_model`).
      quantization: a `tl.convert.variants.Quantization`.
      calibration: a `tl.convert.calibration.Calibration`, needed for int8.
      progress: show a progress bar while the converter calibrates.

    Returns:
      The .tflite bytes (no tl-edge info yet).

    Raises:
      ConvertError: naming the variant and the ops the converter could not handle.
    """
    tf, _ = import_tensorflow()
    from tensorflow.lite.python.convert_phase import ConverterError

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
    with quiet_native_stderr() as (real_stderr, captured):
        representative = None
        if quantization.needs_calibration and calibration is not None:
            representative = calibration.representative_dataset(progress_file=real_stderr if progress else None)
        quantization.apply(converter, representative)
        try:
            return converter.convert()
        except ConverterError as e:
            log.debug("converter log:\n%s", captured())
            raise ConvertError(describe_failure(quantization.variant, e)) from e
        except (ValueError, RuntimeError) as e:
            log.debug("converter log:\n%s", captured())
            raise ConvertError(f"converting to {quantization.variant} failed: {_first_line(str(e))}") from e


def describe_failure(variant, error):
    """Turns a converter error into one message that names the failing op(s) and what to do."""
    details = getattr(error, "errors", None) or []
    ops = sorted({d.operator.name for d in details if d.operator.name})
    first = _first_line(details[0].error_message if details else str(error))
    where = f" at op {', '.join(ops)}" if ops else ""
    return (
        f"converting to {variant} failed{where}: {first}. TFLite has no builtin kernel for it; replace the "
        "layer that uses it with a standard Keras layer, or convert another variant"
    )


def model_info(labels, spec, variant, extra, task="classification"):
    """The ModelInfo every tl-convert file carries (labels, input spec, variant, provenance)."""
    extra = dict(extra, tl_edge=__version__, converter=_tf_version())
    return ModelInfo(labels=list(labels), input=spec, variant=variant, task=task, extra=extra)


def write_model(path, model_bytes, info):
    """Attaches the standard metadata record and `info` to the model bytes and writes the file atomically.

    Returns:
      The number of bytes written.
    """
    data = embed_model_info(model_bytes, info, about(info, model_bytes))
    write_bytes(path, data)
    return len(data)


def about(info, model_bytes):
    """The model-level fields of the standard metadata record: name, description, version, author.

    The version is the FlatBuffer's own hash: two files with equal versions compute the same thing.
    """
    names = " / ".join(info.labels[:6]) + (" / …" if len(info.labels) > 6 else "")
    if info.task == "embedding":
        name, what = f"{names} embedder ({info.variant})", "the unit image embedding out, for tl-device enroll"
    elif (info.extra.get("outputs") or {}).get("embedding"):
        name = f"{names} door model ({info.variant})"
        what = (f"output 0: the probability of each of {len(info.labels)} classes; output 1: the unit image "
                f"embedding that tl-device's open-set rejection measures. MediaPipe reads every output as a "
                f"classification head; for it and other runtimes take classifier_{info.variant}.tflite")
    else:
        name, what = f"{names} classifier ({info.variant})", f"the probability of each of {len(info.labels)} classes out"
    return std.StandardMetadata(
        name=name, description=f"Made by tl-train and tl-convert ({info.variant}): one RGB image in, {what}.",
        version=version(model_bytes), author=f"tl-edge {__version__}")


def version(model_bytes):
    """A model version that names its weights: the first 12 hex digits of the FlatBuffer's sha256."""
    return "sha256:" + hashlib.sha256(bytes(model_bytes)).hexdigest()[:12]


def _tf_version():
    tf, _ = import_tensorflow()
    return f"tensorflow {tf.__version__}"


def _first_line(text):
    for line in str(text).splitlines():
        if line.strip():
            return line.strip()
    return "unknown error"
