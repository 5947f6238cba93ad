"""Converting a SavedModel into one TFLite variant, and writing it as a self-describing file."""

import logging

from tl.device import __version__
from tl.device.data.atomic import write_bytes
from tl.device.errors import TLError
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
    """Appends `info` to the model bytes and writes the file atomically.

    Returns:
      The number of bytes written.
    """
    data = embed_model_info(model_bytes, info)
    write_bytes(path, data)
    return len(data)


def _tf_version():
    tf, _ = import_tensorflow()
    return f"tensorflow {tf.__version__}"


def _first_line(text):
    for line in str(text).splitlines():
        if line.strip():
            return line.strip()
    return "unknown error"
