"""The one place that chooses a TFLite runtime (ai_edge_litert, then tflite_runtime, then tensorflow.lite)
and makes interpreters: `make_interpreter`, from a path or bytes, with threads and the Edge TPU delegate."""

import functools
import importlib
import logging
import platform

from tl.device.errors import ModelError, RuntimeMissingError
from tl.device.model.metadata import TFLITE_IDENT, check_tflite

log = logging.getLogger(__name__)

# (module, what to call it in messages); tensorflow.lite is last because it drags in TensorFlow.
_RUNTIMES = (
    ("ai_edge_litert.interpreter", "ai-edge-litert"),
    ("tflite_runtime.interpreter", "tflite-runtime"),
    ("tensorflow.lite", "tensorflow.lite"),
)
EDGETPU_LIB = {"Linux": "libedgetpu.so.1", "Darwin": "libedgetpu.1.dylib", "Windows": "edgetpu.dll"}


@functools.cache
def runtime_module():
    """Returns (module, name) of the first importable TFLite runtime.

    Raises:
      RuntimeMissingError: with the pip command that fixes it.
    """
    for modname, name in _RUNTIMES:
        try:
            module = importlib.import_module(modname)
        except ImportError:
            continue
        log.debug("TFLite runtime: %s", name)
        return module, name
    raise RuntimeMissingError(
        "no TFLite runtime found; install one with: pip install 'tl-edge[device]' (ai-edge-litert)"
    )


def runtime_version():
    """Returns 'name version' of the chosen runtime, for reports."""
    module, name = runtime_module()
    from importlib import metadata

    dist = {"ai-edge-litert": "ai-edge-litert", "tflite-runtime": "tflite-runtime"}.get(name, "tensorflow")
    try:
        return f"{name} {metadata.version(dist)}"
    except metadata.PackageNotFoundError:
        return name


def load_edgetpu_delegate(options=None):
    """Loads the Edge TPU delegate, with a message that says how to fix a missing library or stick."""
    module, _ = runtime_module()
    lib = EDGETPU_LIB.get(platform.system(), "libedgetpu.so.1")
    try:
        return module.load_delegate(lib, options or {})
    except (ValueError, OSError, RuntimeError) as e:
        raise ModelError(
            f"cannot load the Edge TPU delegate {lib} ({e}); install libedgetpu1-std from the Coral "
            "apt repository and check that the USB accelerator is plugged in (lsusb shows 'Google')"
        ) from e


def uses_edgetpu(model, edgetpu=None):
    """Whether `make_interpreter` loads the Edge TPU delegate: as told, else for a file named *_edgetpu.tflite."""
    if edgetpu is not None:
        return bool(edgetpu)
    return not isinstance(model, (bytes, bytearray, memoryview)) and str(model).endswith("_edgetpu.tflite")


def make_interpreter(model, threads=None, edgetpu=None):
    """Creates and allocates an interpreter for a .tflite file or a model's bytes: every interpreter in tl-edge.

    The device, tl-bench's worker and tl-convert's checks all load models here, so the runtime, the
    threads and the delegate are chosen the same way everywhere.

    Args:
      model: the model file (str or Path), or the model itself (bytes, e.g. fresh from the converter);
        refused, with its name, if it is not a TFLite model.
      threads: CPU threads for the interpreter (None: the runtime's default).
      edgetpu: use the Edge TPU delegate; None means "when the file name ends in _edgetpu.tflite"
        (never for bytes).

    Returns:
      An allocated interpreter.

    Raises:
      ModelError: not a TFLite model, or the runtime cannot load it.
      RuntimeMissingError: no TFLite runtime is installed.
    """
    in_memory = isinstance(model, (bytes, bytearray, memoryview))
    if in_memory:
        model = bytes(model)
        name = f"({len(model)} bytes in memory)"
        if len(model) < 16 or model[4:8] != TFLITE_IDENT:
            raise ModelError(f"model {name} is not a TFLite model (no TFL3 identifier); convert it again")
        source = {"model_content": model}
    else:
        check_tflite(model)
        name = str(model)
        source = {"model_path": name}
    module, runtime = runtime_module()
    delegates = [load_edgetpu_delegate()] if uses_edgetpu(model, edgetpu) else None
    try:
        interpreter = module.Interpreter(**source, num_threads=threads, experimental_delegates=delegates)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        raise ModelError(f"model {name}: {runtime} cannot load it ({e}); re-export it with tl-convert") from e
    return interpreter
