"""Shared helpers of the tl-device tests: synthetic porch scenes and tiny trained .tflite models.

The models are built once per session (TensorFlow is allowed in tests, never in tl.device) and
cached on disk under pytest's base temp folder, so every test module that asks gets the same files.
"""

import functools
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from tl.device.model.contract import InputSpec, prepare_frame
from tl.device.model.metadata import ModelInfo, embed_model_info

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SCENE_LABELS = ["background", "dog", "raccoon"]
# BGR colours of the synthetic visitors: an orange dog, a slate-blue raccoon.
VISITOR_BGR = {"dog": (40, 140, 235), "raccoon": (200, 70, 30)}
TINY_SIZE = 32


def make_scene(kind, rng, size=(480, 640)):
    """A synthetic porch frame (BGR): planks and noise, with a visitor ellipse for dog/raccoon."""
    h, w = size
    y = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    base = np.array([90, 110, 120], np.float32) * (0.8 + 0.4 * y)
    frame = base + rng.normal(0, 10, (h, w, 3)).astype(np.float32)
    frame[:: max(1, h // 12)] *= 0.7  # plank edges
    frame = np.clip(frame, 0, 255).astype(np.uint8)
    frame = np.broadcast_to(frame, (h, w, 3)).copy()
    if kind in VISITOR_BGR:
        cx = int(w * rng.uniform(0.35, 0.65))
        cy = int(h * rng.uniform(0.4, 0.6))
        axes = (int(w * rng.uniform(0.22, 0.3)), int(h * rng.uniform(0.25, 0.35)))
        colour = tuple(int(c + rng.normal(0, 10)) for c in VISITOR_BGR[kind])
        cv2.ellipse(frame, (cx, cy), axes, 0, 0, 360, colour, -1)
    return frame


def _training_set(n_per_class, seed):
    rng = np.random.default_rng(seed)
    spec = InputSpec(TINY_SIZE, TINY_SIZE)
    xs, ys = [], []
    for label, kind in enumerate(SCENE_LABELS):
        for _ in range(n_per_class):
            xs.append(prepare_frame(make_scene(kind, rng, size=(96, 128)), spec))
            ys.append(label)
    return np.stack(xs).astype(np.float32), np.array(ys)


def _train_keras(x, y):
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((TINY_SIZE, TINY_SIZE, 3)),
        keras.layers.Rescaling(1.0 / 255),
        keras.layers.Conv2D(16, 3, activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(len(SCENE_LABELS), activation="softmax"),
    ])
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=50, batch_size=32, verbose=0, shuffle=True)
    return model


def _convert(model, x, int8):
    import warnings

    import tensorflow as tf

    warnings.filterwarnings("ignore", "Statistics for quantized inputs", UserWarning)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if int8:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([x[i : i + 1]] for i in range(0, len(x), 3))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter.convert()


@functools.cache
def build_models(folder):
    """Builds (once per folder) the tiny models and broken files the tests use; returns {name: path}.

    tiny_int8 / tiny_float: a trained background/dog/raccoon classifier with labels and input
    spec embedded; plain_float: the same flatbuffer without any info; the rest are bad inputs.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {name: folder / f"{name}.tflite" for name in
             ("tiny_int8", "tiny_float", "plain_float", "truncated", "not_tflite", "gray_input")}
    x, y = _training_set(60, seed=0)
    model = _train_keras(x, y)
    spec = InputSpec(TINY_SIZE, TINY_SIZE)
    for name, int8 in (("tiny_int8", True), ("tiny_float", False)):
        raw = _convert(model, x, int8)
        info = ModelInfo(labels=list(SCENE_LABELS), input=spec, variant="int8" if int8 else "float32")
        data = embed_model_info(raw, info)
        paths[name].write_bytes(data)
        if not int8:
            paths["plain_float"].write_bytes(raw)
            paths["truncated"].write_bytes(data[: len(data) // 3])
    paths["not_tflite"].write_text("this is not a model\n" * 10)
    paths["gray_input"].write_bytes(embed_model_info(_gray_model(), ModelInfo(labels=["a", "b"], input=InputSpec(8, 8))))
    return paths


def _gray_model():
    import keras

    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(2, activation="softmax")])
    return _convert(model, None, int8=False)


def write_frames(folder, kinds, seed=0, ext=".jpg"):
    """Writes folder/frame_00000.jpg... one synthetic scene per entry of `kinds`; returns folder."""
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i, kind in enumerate(kinds):
        cv2.imwrite(str(folder / f"frame_{i:05d}{ext}"), make_scene(kind, rng))
    return folder


def write_video(path, kinds, fps=10.0, seed=0):
    """Writes an MJPG .avi with one synthetic scene per entry of `kinds`; returns path."""
    rng = np.random.default_rng(seed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (640, 480))
    if not writer.isOpened():
        pytest.skip("OpenCV cannot write MJPG video here")
    for kind in kinds:
        writer.write(make_scene(kind, rng))
    writer.release()
    return Path(path)


def timeline(*parts):
    """Expands ("dog", 5), ("background", 3)... into a list of scene kinds."""
    return [kind for kind, count in parts for _ in range(count)]
