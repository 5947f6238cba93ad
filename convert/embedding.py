"""The embedding as a model output: a classifier that also returns its pooled features, and the embedder.

Both come from the Keras model tl-train wrote: the pooled backbone features (layer "pool"),
L2-normalised by `tf.math.l2_normalize`, which the converter turns into one L2_NORMALIZATION op
(an int8 kernel the Edge TPU also runs; Keras' UnitNormalization becomes SQUARE/SUM/RSQRT/MUL).
The classifier then yields scores and embedding from one invoke, so the device never runs the
backbone twice per frame.
"""

import hashlib
import json

import numpy as np

from tl.convert.reference import PREDICT_BATCH, export_saved_model
from tl.device.errors import ModelError
from tl.train.quiet import import_tensorflow

POOL_LAYER = "pool"  # tl-train's GlobalAveragePooling2D between the backbone and the head
SCORES, EMBEDDING = "scores", "embedding"


def pooled_output(model):
    """The pooled feature tensor of a classifier: tl-train's "pool" layer, else its only global pooling layer.

    Raises:
      ModelError: the model has no (single) global average pooling layer.
    """
    _, keras = import_tensorflow()
    names = [layer.name for layer in model.layers]
    if POOL_LAYER in names:
        return model.get_layer(POOL_LAYER).output
    pools = [layer for layer in model.layers if isinstance(layer, keras.layers.GlobalAveragePooling2D)]
    if len(pools) != 1:
        raise ModelError(f"model {model.name}: no single global-average-pooling layer to take the embedding from; "
                         "train it with tl-train, or convert with --no-openset")
    return pools[0].output


class GraphReference:
    """A Keras model built at convert time (two outputs, or the embedder), exported like `Reference` does.

    Attributes:
      model: the Keras model.
      path: the model file it was built from (for messages).
      embedding_id: a hash of the backbone's weights and the input size: the embedding space's identity.
      dim: embedding size.
    """

    kind = "keras"

    def __init__(self, model, path, embedding_id, dim):
        self.model = model
        self.path = path
        self.embedding_id = embedding_id
        self.dim = dim

    def saved_model(self, folder, height, width):
        """Exports the model (batch 1, fixed H×W) for the converter."""
        return export_saved_model(self.model, folder, height, width, self.path)

    def embed(self, pixels):
        """Float unit embeddings (N, dim) of uint8 (N, H, W, 3) pixels."""
        outputs = self.model.predict(pixels.astype(np.float32), batch_size=PREDICT_BATCH, verbose=0)
        out = outputs[-1] if isinstance(outputs, (list, tuple)) else outputs
        return np.asarray(out, np.float32)


def build_graphs(keras_model, path, spec):
    """Builds the two-output classifier and the embedder from a Keras classifier.

    Returns:
      (classifier GraphReference with outputs [scores, embedding], embedder GraphReference).
    """
    tf, keras = import_tensorflow()
    pooled = pooled_output(keras_model)
    unit = keras.layers.Lambda(lambda t: tf.math.l2_normalize(t, axis=-1), name=EMBEDDING)(pooled)
    ident = embedding_id(keras.Model(keras_model.input, pooled), spec)
    dim = int(pooled.shape[-1])
    both = keras.Model(keras_model.input, [keras_model.output, unit], name="classifier_with_embedding")
    embedder = keras.Model(keras_model.input, unit, name="embedder")
    return GraphReference(both, path, ident, dim), GraphReference(embedder, path, ident, dim)


def embedding_id(features, spec):
    """Hashes the feature extractor's weights and the input spec: equal ids, comparable embeddings.

    Two runs on the same frozen backbone share an id (their galleries are interchangeable);
    fine-tuning or another backbone or input size changes it.
    """
    h = hashlib.sha256(json.dumps(spec.to_dict(), sort_keys=True).encode())
    for w in features.get_weights():
        h.update(np.ascontiguousarray(w, np.float32).tobytes())
    return h.hexdigest()[:16]


def name_outputs(model_bytes, names):
    """Orders and names a converted model's outputs by the Keras outputs they come from.

    The converter's output order is not the Keras order (the embedding may come first), and
    readers that take output 0 expect scores; the signature still says which is which
    (output_0, output_1... in Keras order), so the outputs are put in that order and named.

    Args:
      model_bytes: the .tflite FlatBuffer.
      names: a name for each Keras output, in order (e.g. ["scores", "embedding"]).

    Returns:
      The rewritten FlatBuffer bytes.
    """
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(model_bytes))
    graph, signature = model.subgraphs[0], model.signatureDefs[0]
    by_key = {t.name.decode() if isinstance(t.name, bytes) else t.name: t for t in signature.outputs}
    keys = [f"output_{i}" for i in range(len(names))] if len(names) > 1 else list(by_key)
    if sorted(keys) != sorted(by_key) or len(graph.outputs) != len(names):
        raise ModelError(f"converted model has outputs {sorted(by_key)}, expected {keys}; please report this")
    order = [by_key[k].tensorIndex for k in keys]
    graph.outputs = np.array(order, np.int32)
    for key, name in zip(keys, names):
        by_key[key].name = name.encode()
        graph.tensors[by_key[key].tensorIndex].name = name.encode()
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))
