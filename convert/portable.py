"""Files for runtimes other than tl-device: the single-output classifier, and Frigate's model folder.

tl-device runs `model_<variant>.tflite`: class scores and the unit embedding from one invoke (the
embedding is what open-set rejection measures). MediaPipe Tasks and the Android Task Library read
every output as a classification head: without metadata the second output fails their label check,
with it the embedding comes back as a second head of 1280 nameless "classes" that every app would
have to know to skip. Frigate reads output 0 and ignores the rest. So each converted classifier also gets `classifier_<variant>.tflite`: the same
FlatBuffer with the embedding output cut off (same weights, same quantization, so the same scores
to the bit), and the standard metadata those runtimes need. Cutting is cheaper and more faithful
than converting and calibrating a second graph.
"""

import dataclasses
import logging
from pathlib import Path

import numpy as np

from tl.device.data.atomic import check_writable, write_bytes, write_text
from tl.device.errors import ConfigError, ModelError
from tl.device.model import tflite_metadata as std
from tl.device.model.metadata import SCORES, embed_model_info, read_model_info, strip_model_info
from tl.device.model.tflite_model import io_tensors

log = logging.getLogger(__name__)

PREFIX = "classifier"
FRIGATE_SIZE = 224  # Frigate resizes every crop to 224x224 RGB and feeds it as uint8
FRIGATE_MODEL, FRIGATE_LABELS = "model.tflite", "labelmap.txt"
_DEVICE_ONLY = ("outputs", "embedding", "openset")  # tl_edge.json keys about the embedding output


def portable_name(model_path):
    """classifier_<variant>.tflite beside model_<variant>.tflite."""
    path = Path(model_path)
    return path.with_name(path.name.replace("model_", f"{PREFIX}_", 1))


def write_classifier(model_path):
    """Writes classifier_<variant>.tflite (scores only, standard metadata) from a converted model_<variant>.tflite.

    Its metadata version is the device model's: the same weights.

    Returns:
      The path written.
    """
    model_path = Path(model_path)
    info = read_model_info(model_path)
    raw = strip_model_info(model_path.read_bytes())
    scores = (info.extra.get("outputs") or {}).get(SCORES)
    if len(io_tensors(raw)[1]) > 1:
        raw = single_output(raw, scores)
    files = {k: v for k, v in info.files.items() if k not in _device_files(info)}
    extra = {k: v for k, v in info.extra.items() if k not in _DEVICE_ONLY}
    portable = dataclasses.replace(info, extra=extra, files=files, metadata=None)
    about = std.StandardMetadata(
        name=f"{' / '.join(info.labels[:6])} classifier ({info.variant})",
        description=(f"Image classifier made by tl-train and tl-convert ({info.variant}): one RGB image in, "
                     f"the probability of each of {len(info.labels)} classes out. For MediaPipe Tasks, the "
                     "Android Task Library, Frigate and any TFLite runtime; tl-device runs model_"
                     f"{info.variant}.tflite, which adds open-set rejection."),
        version=info.metadata.version if info.metadata else "", author=f"tl-edge {info.extra.get('tl_edge', '')}".strip())
    out = portable_name(model_path)
    write_bytes(out, embed_model_info(raw, portable, about))
    return out


def _device_files(info):
    openset = (info.extra.get("openset") or {}).get("file")
    return {openset} if openset else set()


def single_output(model_bytes, keep=None):
    """Returns the model with one output left: the tensor named `keep` (None: output 0).

    Operators only the dropped outputs needed are removed too, so nothing runs for them.
    """
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(model_bytes))
    graph = model.subgraphs[0]
    names = [_text(graph.tensors[i].name) for i in graph.outputs]
    if keep is not None and keep not in names:
        raise ModelError(f"model has no output named {keep!r} (outputs: {', '.join(names)}); re-convert it")
    index = int(graph.outputs[names.index(keep) if keep is not None else 0])
    graph.outputs = np.array([index], np.int32)
    graph.operators = _live_operators(graph.operators, {index})
    for signature in model.signatureDefs or []:
        signature.outputs = [o for o in signature.outputs if o.tensorIndex == index]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _live_operators(operators, needed):
    """The operators that feed the `needed` tensors, in their order."""
    needed, live = set(needed), []
    for op in reversed(operators):
        if needed.intersection(int(t) for t in op.outputs):
            live.append(op)
            needed.update(int(t) for t in op.inputs if t >= 0)
    return live[::-1]


def _text(name):
    return name.decode() if isinstance(name, bytes) else str(name)


def write_all(paths, frigate=None, echo=print):
    """classifier_<variant>.tflite beside each converted model, and with `frigate` Frigate's folder.

    Returns:
      {variant: {"path", "bytes"}}, plus "frigate": the folder, for convert.json.
    """
    out = {}
    for variant, path in paths.items():
        if Path(path).is_file():
            written = write_classifier(path)
            out[variant] = {"path": str(written), "bytes": written.stat().st_size}
    if frigate is not None and "int8" in out:
        folder = write_frigate(out["int8"]["path"], frigate)
        echo(f"frigate: wrote {folder / FRIGATE_MODEL} and {FRIGATE_LABELS}")
        out["frigate"] = str(folder)
    return out


def check_frigate(spec, io):
    """Refuses, before converting, a model Frigate could not feed (it feeds uint8 224x224 RGB).

    Raises:
      ConfigError: naming what to change.
    """
    if (spec.height, spec.width) != (FRIGATE_SIZE, FRIGATE_SIZE):
        raise ConfigError(f"--frigate: Frigate feeds {FRIGATE_SIZE}x{FRIGATE_SIZE} images and this model takes "
                          f"{spec.width}x{spec.height}; train with tl-train --image-size {FRIGATE_SIZE}")
    if io != "uint8":
        raise ConfigError(f"--frigate: Frigate feeds uint8 pixels; convert with --io uint8 (the default), not {io}")


def write_frigate(classifier_path, out_dir):
    """Writes Frigate's custom classification folder: model.tflite (uint8 in, scores at output 0) and labelmap.txt.

    Returns:
      The folder.
    """
    out_dir = check_writable(out_dir)
    info = read_model_info(classifier_path)
    write_bytes(out_dir / FRIGATE_MODEL, Path(classifier_path).read_bytes())
    write_text(out_dir / FRIGATE_LABELS, "\n".join(info.labels) + "\n")
    return out_dir
