"""A classification model loaded once: its labels, its input spec and its interpreter."""

import collections
import dataclasses
import logging
import time
from pathlib import Path

import numpy as np

from tl.device.model import contract
from tl.device.model.metadata import pixel_range_from_metadata, read_model_info
from tl.device.model.night import for_model
from tl.device.model.outputs import check_scores, find_outputs, read_embedding, read_output
from tl.device.model.runtime import make_interpreter

log = logging.getLogger(__name__)

Class = collections.namedtuple("Class", ["id", "label", "score"])
Class.__doc__ = "One class of a classification result: output index, label and float score."


class Classifier:
    """A .tflite classifier: labels and input spec read from the file, interpreter made once.

    Attributes:
      path: the model file.
      info: the ModelInfo read from the file (labels, input spec, variant).
      labels: class names in output order.
      spec: the InputSpec frames are prepared with; derived from the input tensor when the file
        carries none (Google's Coral models, for one).
      interpreter: the allocated interpreter.
      outputs: the Outputs (scores and, for tl-convert models with open-set statistics, the embedding).
      invoke_ms: duration of the last `invoke`, in milliseconds.
    """

    def __init__(self, model_path, labels_path=None, threads=None, edgetpu=None, night=True):
        """Loads a model.

        Args:
          model_path: the .tflite file.
          labels_path: a labels file that overrides (or stands in for missing) embedded labels.
          threads: interpreter CPU threads (None: the runtime's default).
          edgetpu: use the Edge TPU delegate (None: when the name ends in _edgetpu.tflite).

        Raises:
          ModelError: naming the file and the fix, when it is missing, not a TFLite model,
            carries no labels, or has inputs or outputs tl-device cannot use.
        """
        self.path = Path(model_path)
        # The interpreter first: a file cut short in transfer is then called that, not "no labels".
        self.interpreter = make_interpreter(self.path, threads=threads, edgetpu=edgetpu)
        self.info = read_model_info(self.path, labels_path)
        self.labels = list(self.info.labels)
        input_detail = self.interpreter.get_input_details()[0]
        contract.check_input(input_detail, self.path, self.info.input)
        self.spec = self.info.input or _derive_spec(input_detail, self.path, self.info.metadata)
        self.outputs = find_outputs(self.interpreter.get_output_details(), self.info, len(self.labels), self.path)
        check_scores(self.outputs.scores, len(self.labels), self.path)
        self.invoke_ms = 0.0
        self.night = bool(night)
        self.night_frame = False  # whether the last input was monochrome and enhanced
        log.info(
            "model %s: %d classes, input %dx%d %s (%s), variant %s",
            self.path, len(self.labels), self.spec.width, self.spec.height,
            np.dtype(input_detail["dtype"]).name, self.spec.pixel_range, self.info.variant,
        )

    def classify_pixels(self, pixels):
        """Runs the model on prepared (H, W, 3) uint8 RGB pixels; returns float scores.

        Monochrome pixels (an infrared night camera) are denoised and contrast-stretched first
        (`tl.device.model.night`) unless the classifier was made with night=False.
        """
        pixels, self.night_frame = for_model(pixels, self.night)
        contract.set_input(self.interpreter, pixels, self.spec.pixel_range)
        start = time.perf_counter()
        self.interpreter.invoke()
        self.invoke_ms = (time.perf_counter() - start) * 1000.0
        return read_output(self.interpreter, self.outputs.scores)

    def embedding(self):
        """Returns the unit embedding of the last classified input (same invoke), or None if the model has none."""
        if self.outputs.embedding is None:
            return None
        return read_embedding(self.interpreter, self.outputs.embedding)

    def classify_frame(self, bgr, roi=None):
        """Scores one camera/video BGR frame, cropped to `roi` (x, y, w, h) first if given."""
        return self.classify_pixels(contract.prepare_frame(bgr, self.spec, roi))

    def classify_image(self, rgb):
        """Scores one RGB image (from `tl.device.model.image.load_image`)."""
        return self.classify_pixels(contract.prepare_image(rgb, self.spec))

    def warm_up(self):
        """Runs one invoke on a blank input, so the first real frame is not the slow one."""
        self.classify_pixels(np.zeros((self.spec.height, self.spec.width, 3), np.uint8))


def top_k(scores, labels, k=3):
    """Returns the `k` best classes, best first, as Class tuples."""
    order = np.argsort(-np.asarray(scores), kind="stable")[: max(1, k)]
    return [Class(int(i), labels[i], float(scores[i])) for i in order]


def _derive_spec(input_detail, path, record=None):
    spec = contract.input_spec_from_tensor(input_detail, path)
    pixel_range = pixel_range_from_metadata(record) if np.dtype(input_detail["dtype"]) == np.float32 else None
    if pixel_range is not None:  # a float input's normalisation is said by the metadata, not its tensor
        spec = dataclasses.replace(spec, pixel_range=pixel_range)
    # Standard metadata (Google's Coral models) is a model that says enough; only a bare file is worth a warning.
    log.log(logging.INFO if record is not None else logging.WARNING,
            "model %s carries no tl-edge input spec; using %dx%d, squash resize, pixel range %s from its %s",
            path, spec.width, spec.height, spec.pixel_range, "metadata and input tensor" if record else "input tensor")
    return spec
