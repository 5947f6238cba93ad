"""Shared fixtures: synthetic colour-class folders, the shared data, an offline Keras weights cache."""

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TL_SHARED_DATA", REPO.parent / "shared" / "data"))
PETS = SHARED / "pets"
WEIGHTS_DIR = SHARED / "weights"
V2_WEIGHTS = WEIGHTS_DIR / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"

# Solid, well-separated colours with a little noise: learnable in a couple of epochs from scratch.
COLOURS = {"blue": (20, 40, 220), "green": (30, 200, 40), "red": (220, 30, 30)}


def write_colour_folder(root, per_class=10, size=(40, 48), colours=COLOURS, seed=0, ext=".png"):
    """Writes root/<colour>/<i><ext> images of noisy solid colours; returns root."""
    import cv2

    rng = np.random.default_rng(seed)
    root = Path(root)
    for name, rgb in colours.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = np.clip(np.array(rgb)[None, None, :] + rng.normal(0, 12, size + (3,)), 0, 255).astype(np.uint8)
            cv2.imwrite(str(root / name / f"{name}_{i:03d}{ext}"), img[:, :, ::-1])  # RGB -> BGR for OpenCV
    return root


@pytest.fixture(scope="session")
def colour_data(tmp_path_factory):
    """A tiny train/val pair of colour-class folders (3 classes)."""
    base = tmp_path_factory.mktemp("colours")
    train = write_colour_folder(base / "train", per_class=12, seed=1)
    val = write_colour_folder(base / "val", per_class=4, seed=2)
    return train, val


@pytest.fixture(scope="session")
def shared_pets():
    """The shared dog/cat/other dataset; tests using it skip when ../shared/data is absent."""
    if not (PETS / "train").is_dir():
        pytest.skip(f"shared pets data not found at {PETS}")
    return PETS


@pytest.fixture(scope="session")
def imagenet_weights():
    """Path of the MobileNetV2 no-top weights, with the Keras cache seeded from it."""
    if not V2_WEIGHTS.is_file():
        pytest.skip(f"MobileNetV2 weights not found at {V2_WEIGHTS}")
    from tl.train.weights import seed_keras_cache

    seed_keras_cache(WEIGHTS_DIR)
    return V2_WEIGHTS


def slice_folder(src, dst, per_class):
    """Copies the first `per_class` files of each class folder of `src` into `dst`; returns dst."""
    import shutil

    for cls in sorted(p for p in Path(src).iterdir() if p.is_dir()):
        (Path(dst) / cls.name).mkdir(parents=True)
        for f in sorted(cls.iterdir())[:per_class]:
            shutil.copy(f, Path(dst) / cls.name / f.name)
    return Path(dst)


# Session fixtures shared by the device, MQTT and open-set tests; their builders live in tests/support/.


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """{name: path} of the tiny porch models (see `tests.support.scenes.build_models`)."""
    from tests.support.scenes import build_models

    return build_models(tmp_path_factory.getbasetemp() / "device_models")


@pytest.fixture(scope="session")
def openset_run(tmp_path_factory):
    """{name: path} of the tiny converted run with its embedder (see `tests.support.openset.build_run`)."""
    from tests.support.openset import build_run

    return build_run(tmp_path_factory.getbasetemp() / "openset_run")


@pytest.fixture
def broker(tmp_path):
    """A running mosquitto on a free 127.0.0.1 port, stopped after the test (skips where there is none)."""
    from tests.support.mqtt import HAVE_PAHO, MOSQUITTO, Broker

    if MOSQUITTO is None or not HAVE_PAHO:
        pytest.skip("needs mosquitto (apt-get install mosquitto; .ci/run does) and paho-mqtt (the [dev] extra)")
    b = Broker(tmp_path / "broker").start()
    try:
        yield b
    finally:
        b.stop()
