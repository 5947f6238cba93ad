"""ImageNet weights: Keras' own cache, seeded from a local folder when there is no internet."""

import os
import shutil
from pathlib import Path

# MobileNetV2 no-top weights do not depend on the input size, but Keras names the cached file by
# size; one file serves every size Keras asks for.
V2_SIZES = (96, 128, 160, 192, 224)
V2_NO_TOP = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{alpha}_{size}_no_top.h5"
TOP_FILE = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5"


def imagenet_file_name(backbone, alpha, size):
    """The no-top ImageNet weights file Keras looks for in its cache for a backbone, width and size."""
    if backbone == "mobilenet_v2":
        return V2_NO_TOP.format(alpha=float(alpha), size=size if size in V2_SIZES else 224)
    kind = backbone.rsplit("_", 1)[-1]  # mobilenet_v3_small -> small
    return f"weights_mobilenet_v3_{kind}_224_{float(alpha)}_float_no_top_v2.h5"


def keras_cache_dir():
    """Returns the folder Keras downloads weights into ($KERAS_HOME/models or ~/.keras/models)."""
    home = os.environ.get("KERAS_HOME")
    if not home:
        base = os.path.expanduser("~")
        home = os.path.join(base if os.access(base, os.W_OK) else "/tmp", ".keras")
    return Path(home) / "models"


def seed_keras_cache(src_dir, cache_dir=None):
    """Copies MobileNetV2 weights from `src_dir` into the Keras cache under every name Keras uses.

    Files already in the cache are left alone, so a real download is never overwritten.

    Returns:
      The list of cache files created.
    """
    src_dir = Path(src_dir)
    cache_dir = Path(cache_dir) if cache_dir else keras_cache_dir()
    created = []
    for src in sorted(src_dir.glob("mobilenet_v2_weights_tf_dim_ordering_tf_kernels_*_224_no_top.h5")):
        alpha = src.name.split("_kernels_")[1].split("_")[0]
        for size in V2_SIZES:
            dst = cache_dir / V2_NO_TOP.format(alpha=alpha, size=size)
            if dst.exists():
                continue
            cache_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
            created.append(dst)
    # The ImageNet top (1000-class layer), for the head's ImageNet prior (tl.train.prior).
    top, dst = src_dir / "mobilenet_v2_1.0_224_imagenet_top_reconstructed.h5", cache_dir / TOP_FILE
    if top.is_file() and not dst.exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(top, dst)
        created.append(dst)
    return created


if __name__ == "__main__":  # python -m tl.train.weights SRC_DIR  (used by the Makefile)
    import sys

    src = sys.argv[1] if len(sys.argv) > 1 else "../shared/data/weights"
    if not Path(src).is_dir():
        print(f"no weights folder at {src}; Keras will download ImageNet weights on first use")
        sys.exit(0)
    made = seed_keras_cache(src)
    print(f"seeded {len(made)} file(s) into {keras_cache_dir()}" if made else f"Keras cache {keras_cache_dir()} already has the weights")
