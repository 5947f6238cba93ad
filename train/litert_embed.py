"""Embedders: TensorFlow (a GPU; random weights) or the frozen backbone converted once to a float32 TFLite
graph and run by LiteRT/XNNPACK (a CPU, about twice as fast as TensorFlow there).

The converted extractor is cached beside the embeddings (ROOT/extractors/<key>.tflite, keyed by backbone,
width, size, a hash of the weights' values and the TensorFlow version that converted it), so only the first
run on a machine converts. Both compute the same float32 graph; their embeddings agree within TOLERANCE
(measured in benchmarks/training.md), far below anything that moves the head — held-out accuracy is the
same — so embeddings from either share one cache entry.
"""

import dataclasses
import hashlib
import logging
import os
from pathlib import Path

import numpy as np

from tl.device.data import atomic
from tl.device.errors import ConfigError, TLError
from tl.train.embeddings import EmbeddingCache, default_cache_dir

log = logging.getLogger(__name__)

ENGINES = ("auto", "tf", "litert")
# |litert - tensorflow| <= ATOL + RTOL * |tensorflow|, per element (float32 on both sides).
TOLERANCE = {"rtol": 1e-4, "atol": 1e-4}


def choose_engine(name, backbone, gpus):
    """Resolves --embedder "auto": TensorFlow on a GPU box (mixed precision, prefetch) and for random weights, else LiteRT.

    Args:
      name: one of ENGINES.
      backbone: the BackboneSpec (random weights differ with every seed, so a converted copy would never be reused).
      gpus: number of visible GPUs.
    """
    if name not in ENGINES:
        raise ConfigError(f"--embedder {name!r} is unknown; use one of {', '.join(ENGINES)}")
    if name != "auto":
        return name
    if gpus or backbone.weights is None or not _litert_available():
        return "tf"
    return "litert"


def _litert_available():
    from tl.device.model.runtime import runtime_module

    try:
        runtime_module()
    except TLError:
        return False
    return True


def pooled_model(features):
    """Backbone features → global average pooling: the (N, dim) embedding both engines compute."""
    import keras

    return keras.Model(features.input, keras.layers.GlobalAveragePooling2D()(features.output))


def tf_extractor(pooled):
    """Wraps the pooled backbone into a compiled function: uint8 (N, H, W, 3) in, float32 (N, dim) out."""
    import tensorflow as tf

    # uint8 crosses into TensorFlow (4× fewer bytes) and is cast inside the graph.
    fn = tf.function(lambda x: pooled(tf.cast(x, tf.float32), training=False), reduce_retracing=True)

    def run(batch):
        return fn(tf.convert_to_tensor(batch)).numpy()

    return run


def extractor_key(backbone, pooled):
    """Names what the converted graph depends on: backbone, width, size, the weights' values, the converter's version."""
    import tensorflow as tf

    h = hashlib.sha256()
    for w in pooled.get_weights():  # the values themselves: a weights file, ImageNet's, or a seed's random ones
        h.update(np.ascontiguousarray(w).tobytes())
    return f"{backbone.name}-a{backbone.alpha:g}-s{backbone.size}-w{h.hexdigest()[:16]}-tf{tf.__version__}"


def converted_extractor(pooled, backbone, root):
    """Returns the path of the TFLite extractor for this backbone, converting it on the first run only.

    Args:
      pooled: the pooled Keras model (see pooled_model).
      backbone: its BackboneSpec (for the cache key).
      root: the cache root (the embedding cache's).
    """
    path = Path(root) / "extractors" / f"{extractor_key(backbone, pooled)}.tflite"
    if path.is_file():
        return path
    log.info("converting the %s extractor to TFLite (once; cached at %s)", backbone.name, path)
    data = convert(pooled, backbone.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic.atomic_path(path, suffix=".tflite") as tmp:
        Path(tmp).write_bytes(data)
    return path


def convert(pooled, size):
    """Converts the pooled model to a float32 TFLite graph with a uint8 input of any batch size."""
    import keras
    import tensorflow as tf

    # uint8 in, cast inside the graph: the same bytes cross into both engines.
    inputs = keras.Input((size, size, 3), dtype="uint8", name="image")
    wrapped = keras.Model(inputs, pooled(keras.ops.cast(inputs, "float32"), training=False))
    converter = tf.lite.TFLiteConverter.from_keras_model(wrapped)
    return converter.convert()


class LiteRTExtractor:
    """Runs a converted extractor: uint8 (N, H, W, 3) in, float32 (N, dim) out.

    The interpreter comes from tl.device.model.runtime.make_interpreter (a path or the model's bytes),
    is created on the first call (a warm run never pays for it) and resized when the batch size changes.
    """

    def __init__(self, model, threads=None):
        self.model = model
        self.threads = threads or os.cpu_count()
        self._interp = None
        self._batch = None

    def _ready(self, n):
        from tl.device.model.runtime import make_interpreter

        if self._interp is None:
            self._interp = make_interpreter(self.model, threads=self.threads)
        if self._batch != n:
            inp = self._interp.get_input_details()[0]
            self._interp.resize_tensor_input(inp["index"], [n, *inp["shape_signature"][1:]])
            self._interp.allocate_tensors()
            self._batch = n
        return self._interp

    def __call__(self, batch):
        batch = np.ascontiguousarray(batch, dtype=np.uint8)
        interp = self._ready(len(batch))
        interp.set_tensor(interp.get_input_details()[0]["index"], batch)
        interp.invoke()
        return interp.get_tensor(interp.get_output_details()[0]["index"]).copy()


def make_extractor(features, backbone, engine, root):
    """The extractor for the chosen engine (resolved, not "auto").

    Returns:
      (callable uint8 batch → float32 embeddings, the TFLite path or None).
    """
    pooled = pooled_model(features)
    if engine == "tf":
        return tf_extractor(pooled), None
    path = converted_extractor(pooled, backbone, root)
    return LiteRTExtractor(path), path


@dataclasses.dataclass
class Engine:
    """Which embedder ran ("litert" or "tf"), its converted model, the runtime, mixed precision."""

    name: str
    extractor: str = None
    mixed_precision: bool = False
    runtime: str = None

    def to_json(self):
        return dataclasses.asdict(self)


def setup_embedding(cfg, features, mixed):
    """Chooses the engine for a TrainConfig, makes its extractor (converting once for LiteRT), opens the cache.

    Returns:
      (Engine, extractor callable, EmbeddingCache).
    """
    import tensorflow as tf

    root = cfg.cache_dir or default_cache_dir()
    name = choose_engine(cfg.embedder, cfg.backbone, len(tf.config.list_physical_devices("GPU")))
    extract, tflite = make_extractor(features, cfg.backbone, name, root)
    key = cfg.backbone.cache_key(cfg.resize)
    mixed = mixed and name == "tf"
    if mixed:
        key += "-mixed16"  # float16 activations move embeddings well beyond the float32 engines' tolerance
    engine = Engine(name, str(tflite) if tflite else None, mixed, _runtime(name))
    return engine, extract, EmbeddingCache(root, key)


def _runtime(name):
    if name == "tf":
        import tensorflow as tf

        return f"tensorflow {tf.__version__}"
    from tl.device.model.runtime import runtime_version

    return runtime_version()
