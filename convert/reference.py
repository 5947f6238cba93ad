"""The float model being converted, as TensorFlow sees it: a Keras model file or a SavedModel.

Every variant is converted from it and checked against its predictions. TensorFlow is imported
here, lazily, so `tl-convert --help` stays fast.
"""

import zipfile
from pathlib import Path

import numpy as np

from tl.device.errors import ModelError
from tl.train.quiet import import_tensorflow, quiet_native_stderr

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")
SAVED_MODEL_PB = "saved_model.pb"
PREDICT_BATCH = 32


def is_saved_model(path):
    """Whether `path` is a SavedModel folder."""
    return Path(path).is_dir() and (Path(path) / SAVED_MODEL_PB).is_file()


class Reference:
    """A loaded float model: predicts scores for raw 0..255 RGB pixels, and exports a SavedModel.

    Args:
      path: a Keras model file (.keras, .h5) or a SavedModel folder.
    """

    def __init__(self, path):
        self.path = Path(path)
        self.kind = "saved_model" if is_saved_model(self.path) else "keras"
        self._keras = None
        self._signature = None
        if self.kind == "keras":
            self._keras = _load_keras(self.path)
            shape = tuple(self._keras.input_shape)
            self.num_outputs = int(self._keras.output_shape[-1])
        else:
            # Keep the loaded object: its signature only holds weak references to the variables.
            self._loaded, self._signature, self._input_name = _load_signature(self.path)
            spec = self._signature.structured_input_signature[1][self._input_name]
            shape = tuple(spec.shape.as_list())
            outputs = self._signature.structured_outputs
            self.num_outputs = int(next(iter(outputs.values())).shape[-1])
        if len(shape) != 4 or shape[-1] != 3:
            raise ModelError(f"model {self.path} takes input of shape {shape}; tl-edge needs (batch, H, W, 3) RGB images")
        # None when the model accepts any size (then --image-size decides).
        self.input_hw = shape[1:3] if None not in shape[1:3] else None
        # A SavedModel exported for one frame at a time only takes batches of that size.
        self._fixed_batch = shape[0] is not None
        self._batch = shape[0] or PREDICT_BATCH

    def predict(self, pixels):
        """Returns the model's float scores, (N, num_outputs), for uint8 (N, H, W, 3) pixels."""
        if len(pixels) == 0:
            return np.zeros((0, self.num_outputs), np.float32)
        x = pixels.astype(np.float32)  # the contract: raw 0..255 pixels, preprocessing inside
        if self._keras is not None:
            return np.asarray(self._keras.predict(x, batch_size=PREDICT_BATCH, verbose=0), np.float32)
        tf, _ = import_tensorflow()
        out = []
        for i in range(0, len(x), self._batch):
            chunk = x[i : i + self._batch]
            n = len(chunk)
            if n < self._batch and self._fixed_batch:  # a fixed batch size: pad the last chunk, keep the real rows
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], self._batch - n, axis=0)])
            result = self._signature(**{self._input_name: tf.constant(chunk)})
            out.append(next(iter(result.values())).numpy()[:n])
        return np.concatenate(out).astype(np.float32)

    def saved_model(self, folder, height, width):
        """Returns a SavedModel folder to convert from, exporting a Keras model into `folder`.

        Keras models are exported with a fixed batch of 1 and a fixed H×W: the Edge TPU
        compiler refuses dynamic shapes, and the device feeds one frame at a time anyway.
        """
        if self._keras is None:
            return self.path
        return export_saved_model(self._keras, folder, height, width, self.path)

    @property
    def keras_model(self):
        """The loaded Keras model, or None for a SavedModel."""
        return self._keras


def export_saved_model(model, folder, height, width, name):
    """Exports a Keras model as a SavedModel taking one (1, height, width, 3) float32 image; returns the folder."""
    tf, _ = import_tensorflow()
    signature = [tf.TensorSpec((1, height, width, 3), tf.float32, name="image")]
    try:
        with quiet_native_stderr():
            model.export(str(folder), format="tf_saved_model", input_signature=signature, verbose=False)
    except (ValueError, TypeError) as e:
        raise ModelError(f"model {name}: cannot export it for conversion ({e})") from e
    return Path(folder)


def _load_keras(path):
    if Path(path).suffix.lower() == ".keras" and Path(path).is_file() and not zipfile.is_zipfile(path):
        # Keras says "File not found" for a .keras file that is there but not a whole ZIP archive.
        raise ModelError(
            f"model {path} is corrupt or truncated (a .keras file is a ZIP archive, and this one is not "
            "complete); copy it again, or train again with tl-train"
        )
    _, keras = import_tensorflow()
    try:
        # The first TensorFlow op probes for GPUs and logs the outcome natively: keep it quiet.
        with quiet_native_stderr():
            return keras.saving.load_model(path, compile=False)
    except (OSError, ValueError, TypeError, KeyError) as e:
        # Keras raises plain ValueError for unknown layers (custom objects) and truncated zips alike.
        raise ModelError(
            f"model {path}: Keras cannot load it ({e}); if it uses custom layers, export a SavedModel "
            "instead, or train again with tl-train"
        ) from e


def _load_signature(path):
    tf, _ = import_tensorflow()
    try:
        with quiet_native_stderr():
            loaded = tf.saved_model.load(str(path))
    except (OSError, ValueError) as e:
        raise ModelError(f"SavedModel {path}: TensorFlow cannot load it ({e})") from e
    signature = loaded.signatures.get("serving_default")
    if signature is None:
        raise ModelError(f"SavedModel {path} has no 'serving_default' signature; export it with one")
    inputs = signature.structured_input_signature[1]
    if len(inputs) != 1 or len(signature.structured_outputs) != 1:
        raise ModelError(
            f"SavedModel {path} has {len(inputs)} inputs and {len(signature.structured_outputs)} outputs; "
            "tl-convert needs one image input and one score output"
        )
    return loaded, signature, next(iter(inputs))
