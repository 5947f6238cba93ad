"""Choosing a tf.distribute strategy and mixed precision (one GPU, many GPUs, many hosts)."""

import logging
import os

from tl.device.errors import ConfigError

log = logging.getLogger(__name__)

STRATEGIES = ("auto", "default", "mirrored", "multiworker")


def make_strategy(name):
    """Returns a tf.distribute strategy.

    Args:
      name: "auto" (MirroredStrategy when more than one GPU is visible, else the default),
        "default" (one device), "mirrored" (all local GPUs, or the CPU), "multiworker"
        (MultiWorkerMirroredStrategy; the cluster comes from the TF_CONFIG variable).
    """
    import tensorflow as tf

    if name not in STRATEGIES:
        raise ConfigError(f"--strategy {name!r} is unknown; use one of {', '.join(STRATEGIES)}")
    gpus = tf.config.list_physical_devices("GPU")
    if name == "auto":
        name = "mirrored" if len(gpus) > 1 else "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if "TF_CONFIG" not in os.environ:
        log.warning("--strategy multiworker without TF_CONFIG: running as a single worker")
    return tf.distribute.MultiWorkerMirroredStrategy()


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
