"""Quantization schemes as one value each, and the one function that applies a scheme to a converter."""

import dataclasses

from tl.device.errors import ConfigError

# In the order tl-convert converts, checks and reports them: the float reference first.
VARIANTS = ("float32", "float16", "dynamic", "int8")
IO_TYPES = ("uint8", "int8", "float32")
DEFAULT_IO = "uint8"


@dataclasses.dataclass(frozen=True)
class Quantization:
    """How one TFLite variant is made.

    Attributes:
      variant: "float32" (plain), "float16" (float16 weights), "dynamic" (int8 weights,
        float activations) or "int8" (full integer, calibrated).
      io: input/output tensor type of the int8 variant: "uint8" (Edge TPU and most
        integer pipelines), "int8", or "float32" (quantize/dequantize inside the model).
        Float variants always take and return float32.
    """

    variant: str
    io: str = "float32"

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ConfigError(f"variant {self.variant!r} is unknown; use one of {', '.join(VARIANTS)}")
        if self.io not in IO_TYPES:
            raise ConfigError(f"--io {self.io!r} is unknown; use one of {', '.join(IO_TYPES)}")

    @classmethod
    def float32(cls):
        return cls("float32")

    @classmethod
    def float16(cls):
        return cls("float16")

    @classmethod
    def dynamic(cls):
        return cls("dynamic")

    @classmethod
    def int8(cls, io=DEFAULT_IO):
        return cls("int8", io=io)

    @classmethod
    def named(cls, variant, io=DEFAULT_IO):
        """Returns the scheme for a variant name; `io` only matters for int8."""
        return cls.int8(io) if variant == "int8" else cls(variant)

    @property
    def needs_calibration(self):
        """Whether the converter needs a representative dataset."""
        return self.variant == "int8"

    def apply(self, converter, representative_dataset=None):
        """Configures a `tf.lite.TFLiteConverter` for this scheme.

        Args:
          converter: a fresh TFLiteConverter.
          representative_dataset: for int8, a callable returning an iterator of
            [float32 (1, H, W, 3)] input lists (see `tl.convert.calibration`).

        Returns:
          The converter, configured.
        """
        import tensorflow as tf

        if self.variant == "float32":
            return converter
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if self.variant == "float16":
            converter.target_spec.supported_types = [tf.float16]
        elif self.variant == "int8":
            if representative_dataset is None:
                raise ConfigError("int8 needs calibration images; pass --calib-dir DIR")
            converter.representative_dataset = representative_dataset
            # Builtins-only int8 kernels: what the Edge TPU and integer-only NPUs need. Per-channel
            # weight quantization is the converter's default for conv layers, so nothing to set.
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            io_type = {"uint8": tf.uint8, "int8": tf.int8, "float32": tf.float32}[self.io]
            converter.inference_input_type = io_type
            converter.inference_output_type = io_type
        # "dynamic": Optimize.DEFAULT without data is the converter's dynamic-range scheme.
        return converter


def file_name(variant, prefix="model"):
    """Returns the file name of a variant, e.g. model_int8.tflite (or embedder_int8.tflite)."""
    return f"{prefix}_{variant}.tflite"
