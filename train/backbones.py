"""Backbones from keras.applications, with their preprocessing inside the model (raw 0..255 RGB in)."""

import dataclasses
import hashlib
from pathlib import Path

from tl.device.errors import ConfigError, DataError, ModelError

BACKBONES = ("mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large")
IMAGE_SIZES = (96, 128, 160, 192, 224)


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """Which pretrained feature extractor, at which width and input size.

    Attributes:
      name: one of BACKBONES.
      alpha: width multiplier (MobileNetV2: 0.35, 0.5, 0.75, 1.0, 1.3, 1.4; V3: 0.75, 1.0).
      size: square input size in pixels.
      weights: "imagenet" (Keras cache or download), None (random, for tests), or a file path.
    """

    name: str = "mobilenet_v2"
    alpha: float = 1.0
    size: int = 224
    weights: str = "imagenet"

    def __post_init__(self):
        if self.name not in BACKBONES:
            raise ConfigError(f"backbone {self.name!r} is unknown; use one of {', '.join(BACKBONES)}")
        if self.weights not in (None, "imagenet") and not Path(self.weights).is_file():
            raise DataError(f"weights file {self.weights} does not exist; give a path to a Keras .h5/.weights.h5 file")

    def weights_id(self):
        """A short identity of the weights, for cache keys: a file's content hash, or its kind."""
        if self.weights is None:
            return "random"
        if self.weights == "imagenet":
            return "imagenet"
        return "file-" + hashlib.sha256(Path(self.weights).read_bytes()).hexdigest()[:16]

    def cache_key(self, resize):
        """Names everything an embedding depends on besides the image and its view."""
        return f"{self.name}-a{self.alpha:g}-s{self.size}-{resize}-{self.weights_id()}"


def build_backbone(spec):
    """Builds the feature extractor: raw 0..255 RGB (size×size×3) in, feature map out.

    Returns:
      A keras.Model whose preprocessing (scaling to the backbone's range) is inside.

    Raises:
      ModelError: when the weights cannot be loaded, with the fix.
    """
    import keras

    inputs = keras.Input((spec.size, spec.size, 3), name="image")
    try:
        base = _application(spec)
    except (OSError, ValueError) as e:
        raise ModelError(_weights_message(spec, e)) from e
    except Exception as e:
        # keras.utils.get_file raises a bare Exception("URL fetch failure ...") when it cannot download.
        if "URL fetch failure" not in str(e):
            raise
        raise ModelError(_offline_message(spec, e)) from e
    base.trainable = False
    if spec.name == "mobilenet_v2":
        # MobileNetV2 expects [-1, 1]; V3 carries its own Rescaling (include_preprocessing).
        x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="preprocess")(inputs)
    else:
        x = inputs
    # training=False keeps BatchNorm in inference mode even when layers are unfrozen for fine-tuning.
    features = base(x, training=False)
    return keras.Model(inputs, features, name=f"{spec.name}_features")


def _application(spec):
    import keras

    apps = keras.applications
    weights = spec.weights
    shape = (spec.size, spec.size, 3)
    if spec.name == "mobilenet_v2":
        return apps.MobileNetV2(input_shape=shape, alpha=spec.alpha, include_top=False, weights=weights)
    ctor = apps.MobileNetV3Small if spec.name == "mobilenet_v3_small" else apps.MobileNetV3Large
    return ctor(input_shape=shape, alpha=spec.alpha, include_top=False, weights=weights, include_preprocessing=True)


def _offline_message(spec, err):
    from tl.train.weights import imagenet_file_name, keras_cache_dir

    missing = keras_cache_dir() / imagenet_file_name(spec.name, spec.alpha, spec.size)
    return (
        f"ImageNet weights for {spec.name} alpha={spec.alpha:g} are not on this machine and cannot be downloaded "
        f"(Keras looked for {missing}; {err}). Copy that file there from a machine with internet, "
        "or pass --weights PATH to a no-top .h5 file for this backbone and width"
    )


def _weights_message(spec, err):
    if spec.weights == "imagenet":
        return (
            f"cannot load ImageNet weights for {spec.name} alpha={spec.alpha:g} ({err}). Offline? "
            "Seed the Keras cache with `make seed-weights` (copies ../shared/data/weights), or pass "
            "--weights PATH to a compatible .h5 file"
        )
    return (
        f"weights file {spec.weights} is unreadable or does not fit {spec.name} alpha={spec.alpha:g} "
        f"size={spec.size} ({err}); give a no-top weights file for that backbone and width"
    )
