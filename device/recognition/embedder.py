"""An embedding extractor loaded once: embedder_<variant>.tflite, or a classifier with an embedding output."""

import hashlib
import logging
from pathlib import Path

from tl.device.errors import ModelError
from tl.device.model import contract
from tl.device.model.metadata import ModelInfo, read_model_info, strip_model_info
from tl.device.model.night import for_model
from tl.device.model.outputs import find_outputs, read_embedding
from tl.device.model.runtime import make_interpreter
from tl.device.recognition.openset import stats_from_model

log = logging.getLogger(__name__)


def embedding_id(info, path):
    """The id of a model's embedding space: tl-convert's (a hash of the backbone), else the file's own hash."""
    recorded = (info.extra.get("embedding") or {}).get("id")
    if recorded:
        return recorded
    data = strip_model_info(Path(path).read_bytes())
    return "file-" + hashlib.sha256(data).hexdigest()[:16]


class Embedder:
    """Turns images into unit embeddings with a .tflite model.

    Attributes:
      path: the model file.
      info: its ModelInfo (a foreign model without any gets an empty one).
      spec: the InputSpec images are prepared with.
      dim: embedding size.
      embedding_id: see `embedding_id`.
      stats: the OpenSetStats the model carries, or None.
    """

    def __init__(self, model_path, threads=None, edgetpu=None, night=True):
        """Loads a model; `night`: enhance monochrome inputs as the door's classifier does (`tl.device.model.night`).

        Raises:
          ModelError: the file is not a model, or has no embedding output.
        """
        self.path = Path(model_path)
        self.interpreter = make_interpreter(self.path, threads=threads, edgetpu=edgetpu)
        self.info = _model_info(self.path)
        detail = self.interpreter.get_input_details()[0]
        contract.check_input(detail, self.path, self.info.input)
        self.spec = self.info.input or contract.input_spec_from_tensor(detail, self.path)
        num_labels = 0 if self.info.task == "embedding" else len(self.info.labels)
        self.output = find_outputs(self.interpreter.get_output_details(), self.info, num_labels, self.path).embedding
        if self.output is None:
            raise ModelError(f"model {self.path} has no embedding output; export the embedder with "
                             "tl-convert RUN_DIR --embedding and enrol with RUN_DIR/embedder_int8.tflite")
        self.dim = int(self.output["shape"][-1])
        self.embedding_id = embedding_id(self.info, self.path)
        self.stats = stats_from_model(self.info)
        self.night = bool(night)

    def embed_pixels(self, pixels):
        """Returns the unit embedding of prepared (H, W, 3) uint8 RGB pixels (monochrome ones enhanced, see __init__)."""
        pixels, _ = for_model(pixels, self.night)
        contract.set_input(self.interpreter, pixels, self.spec.pixel_range)
        self.interpreter.invoke()
        return read_embedding(self.interpreter, self.output)

    def embed_image(self, rgb):
        """Returns the unit embedding of an RGB image of any size."""
        return self.embed_pixels(contract.prepare_image(rgb, self.spec))


def _model_info(path):
    try:
        return read_model_info(path)
    except ModelError:
        # The interpreter already accepted the file, so what is missing is tl-edge's info: a foreign
        # embedding extractor (Coral's imprinting backbone, say). Its input tensor tells the size.
        log.warning("model %s carries no tl-edge info; treating it as an embedding extractor", path)
        return ModelInfo(labels=[], input=None, variant="unknown", task="embedding")
