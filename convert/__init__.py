"""tl.convert: quantized, self-describing TFLite models from a tl-train run."""
