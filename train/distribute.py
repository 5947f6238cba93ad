"""Choosing a tf.distribute strategy and mixed precision (one device, or several GPUs in one box).

More machines are a Ray cluster's job (tl-train --ray, tl.train.cluster): the costly embedding pass
spreads over it and the head trains on one machine. TensorFlow's MultiWorkerMirroredStrategy was
offered here once and removed: with Keras 3 it fails in fit() as soon as a second worker joins
(keras-team/keras#20585).
"""

import logging

from tl.device.errors import ConfigError

log = logging.getLogger(__name__)

STRATEGIES = ("auto", "default", "mirrored")
REMOVED = {
    "multiworker": "--strategy multiworker was removed: MultiWorkerMirroredStrategy fails in Keras 3 fit() with "
    "more than one worker (keras-team/keras#20585). To use more machines, embed on a Ray cluster: "
    "tl-train DATA --out RUN --ray ADDRESS (or --ray auto)",
}


def make_strategy(name):
    """Returns a tf.distribute strategy.

    Args:
      name: "auto" (MirroredStrategy when more than one GPU is visible, else the default),
        "default" (one device), "mirrored" (every local GPU; without GPUs, every logical CPU device,
        which is how the tests run two replicas on one CPU).

    Raises:
      ConfigError: an unknown or removed strategy, with what to use instead.
    """
    import tensorflow as tf

    if name in REMOVED:
        raise ConfigError(REMOVED[name])
    if name not in STRATEGIES:
        raise ConfigError(f"--strategy {name!r} is unknown; use one of {', '.join(STRATEGIES)}")
    gpus = tf.config.list_physical_devices("GPU")
    if name == "auto":
        name = "mirrored" if len(gpus) > 1 else "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if gpus:
        return tf.distribute.MirroredStrategy()
    cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(cpus if len(cpus) > 1 else None)


def set_mixed_precision(enabled):
    """Turns on mixed_float16 when asked and a GPU is present; returns whether it is on."""
    import keras
    import tensorflow as tf

    if not enabled:
        return False
    if not tf.config.list_physical_devices("GPU"):
        log.warning("--mixed-precision ignored: no GPU (float16 on a CPU is slower, not faster)")
        return False
    keras.mixed_precision.set_global_policy("mixed_float16")
    return True
