"""Which output tensor of a model holds what: the class scores and, when there is one, the embedding.

tl-convert puts the scores first and names the tensors `scores` and `embedding` (and records the
names in the model's info), so older readers that take output 0 still get scores. Readers here
do not rely on the order: they look the tensors up by recorded name, then by shape. The device,
tl-bench's worker and tl-convert's checks all read outputs through this module.
"""

import collections

import numpy as np

from tl.device.errors import ModelError
from tl.device.model.contract import dequantize_output

Outputs = collections.namedtuple("Outputs", ["scores", "embedding"])
Outputs.__doc__ = "Output tensor details of the class scores and of the embedding (None when the model has none)."


def find_outputs(details, info, num_labels, path):
    """Finds the scores and embedding outputs among a model's output details.

    Args:
      details: `interpreter.get_output_details()`.
      info: the model's ModelInfo (its extra may name the outputs and the embedding size), or None.
      num_labels: how many classes the model has; 0: an embedding-only model; None: a classifier whose
        labels are not known (tl-bench measuring latency only), so its scores are the named or the only output.
      path: the model file, for messages.

    Raises:
      ModelError: when the outputs cannot be told apart.
    """
    extra = info.extra if info is not None else {}
    if num_labels and info is not None and info.task == "embedding":
        raise ModelError(f"model {path} is an embedding extractor (for tl-device enroll), not a classifier; "
                         "run the door with the model_<variant>.tflite of the same run")
    named = extra.get("outputs") or {}
    by_name = {d["name"]: d for d in details}
    scores = by_name.get(named.get("scores"))
    embedding = by_name.get(named.get("embedding"))
    dim = (extra.get("embedding") or {}).get("dim")
    if scores is None and num_labels is None:
        scores = details[0] if len(details) == 1 else _by_width(details, None, "scores (give the labels)", path)
    if scores is None and num_labels:
        scores = details[0] if len(details) == 1 else _by_width(details, num_labels, "scores", path)
    if embedding is None and len(details) > 1 and dim:
        embedding = _by_width([d for d in details if d is not scores], dim, "embedding", path)
    if embedding is None and num_labels == 0:
        embedding = details[0] if len(details) == 1 else _by_width(details, dim, "embedding", path)
    return Outputs(scores, embedding)


def _by_width(details, width, what, path):
    found = [d for d in details if tuple(int(v) for v in d["shape"]) == (1, int(width or -1))]
    if len(found) != 1:
        shapes = ", ".join(str(tuple(int(v) for v in d["shape"])) for d in details)
        raise ModelError(f"model {path}: cannot tell which output holds the {what} (outputs {shapes}); "
                         "re-export it with tl-convert")
    return found[0]


def check_scores(detail, num_labels, path):
    """Refuses a scores output that is not a classifier's (1, classes), or whose classes are not the labels.

    Args:
      detail: the scores output's details (`Outputs.scores`).
      num_labels: how many labels the model has; None: not known, so not compared.
      path: the model file, for messages.

    Raises:
      ModelError: naming the file and the fix.
    """
    shape = tuple(int(d) for d in detail["shape"])
    if len(shape) != 2 or shape[0] != 1:
        raise ModelError(f"model {path}: output shape {shape} is not a classifier's (1, classes); "
                         "tl-device runs classification models")
    if num_labels is not None and shape[1] != num_labels:
        raise ModelError(f"model {path} has {shape[1]} outputs but {num_labels} labels; "
                         "give the labels file that belongs to this model (--labels)")


def read_output(interpreter, detail):
    """Returns one output's values after an invoke, dequantized to float32, without the batch axis."""
    out = interpreter.get_tensor(detail["index"])
    return dequantize_output(out, detail)[0].astype(np.float32)


def read_embedding(interpreter, detail):
    """Returns the embedding output as a unit float32 vector.

    Re-normalised in float: the int8 output's rounding leaves its length a little off 1.
    """
    e = read_output(interpreter, detail)
    return e / max(float(np.linalg.norm(e)), 1e-12)
