"""tl.device: the runtime contract and the on-device side of tl-edge (never imports TensorFlow)."""

__version__ = "0.1.0"
