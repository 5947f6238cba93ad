"""Shared helpers of the open-set and enrolment tests: a tiny porch "run" converted with its embedding.

A tiny CNN learns background / dog / raccoon porch scenes (32 px, seconds on a CPU); its RUN_DIR
gets open-set statistics from its own pooled features, as tl-train would write them, and goes
through tl-convert's real pipeline (int8, --embedding). Built once per session, cached on disk.
"""

import functools
import hashlib
import json
import os
from pathlib import Path

import cv2
import numpy as np

from tests.support.scenes import SCENE_LABELS, TINY_SIZE, make_scene
from tl.device.model.contract import InputSpec, prepare_image
from tl.device.model.image import load_image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# The door camera's view, cropped to the flap: a visitor fills most of it. BGR colours; the strangers
# (a green "fox", a purple "person") are colours the model never saw.
VISITORS = {"dog": (40, 140, 235), "raccoon": (200, 70, 30)}
STRANGERS = {"fox": (40, 170, 40), "person": (150, 40, 150)}
FRAME = (120, 160)


def closeup(kind, rng, size=FRAME):
    """A close-up door frame (BGR): planks, with a visitor ellipse unless `kind` is background; "noise" is noise."""
    if kind == "noise":
        return rng.integers(0, 256, size + (3,), dtype=np.uint8)
    frame = make_scene("background", rng, size)
    colour = {**VISITORS, **STRANGERS}.get(kind)
    if colour is not None:
        h, w = size
        centre = (int(w * rng.uniform(0.45, 0.55)), int(h * rng.uniform(0.45, 0.55)))
        axes = (int(w * rng.uniform(0.35, 0.42)), int(h * rng.uniform(0.38, 0.45)))
        cv2.ellipse(frame, centre, axes, 0, 0, 360, tuple(int(c + rng.normal(0, 8)) for c in colour), -1)
    return frame


def write_class_folder(root, per_class, seed):
    """root/<label>/<i>.png porch scenes; returns root."""
    rng = np.random.default_rng(seed)
    for label in SCENE_LABELS:
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            cv2.imwrite(str(root / label / f"{i:03d}.png"), closeup(label, rng))
    return root


def _pixels(root):
    from tl.device.data.dataset import scan_folder

    data = scan_folder(root)
    spec = InputSpec(TINY_SIZE, TINY_SIZE)
    x = np.stack([prepare_image(load_image(s.path), spec) for s in data.samples]).astype(np.float32)
    return x, np.array([s.label for s in data.samples])


def _train(x, y):
    import keras

    keras.utils.set_random_seed(0)
    L = keras.layers
    inp = keras.Input((TINY_SIZE, TINY_SIZE, 3), name="image")
    h = L.Conv2D(16, 3, activation="relu")(L.Rescaling(1.0 / 255, offset=-0.5)(inp))
    h = L.Conv2D(32, 3, strides=2, activation="relu")(h)
    pooled = L.GlobalAveragePooling2D(name="pool")(h)
    model = keras.Model(inp, L.Dense(len(SCENE_LABELS), activation="softmax")(pooled))
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=60, batch_size=32, verbose=0)
    return model, keras.Model(inp, pooled)


@functools.cache
def build_run(folder):
    """Trains, writes and converts the tiny run once per folder; returns {name: path}.

    Names: run (RUN_DIR), model (model_int8.tflite, two outputs), embedder (embedder_int8.tflite).
    """
    from tl.convert import pipeline
    from tl.convert.source import open_source
    from tl.train import openset

    folder = Path(folder)
    train, val = write_class_folder(folder / "train", 30, 1), write_class_folder(folder / "val", 8, 2)
    x, y = _pixels(train)
    model, pooled = _train(x, y)
    run = folder / "run"
    run.mkdir(parents=True, exist_ok=True)
    model.save(run / "model.keras")
    (run / "labels.txt").write_text("\n".join(SCENE_LABELS) + "\n")
    xv, _ = _pixels(val)
    stats = openset.compute_stats(pooled.predict(x, verbose=0), y, SCENE_LABELS, val_scores=model.predict(xv, verbose=0))
    openset.write_stats(run, stats)
    record = {"labels": SCENE_LABELS, "input": InputSpec(TINY_SIZE, TINY_SIZE).to_dict(),
              "data": {"train_dir": str(train), "val_dir": str(val), "val_files": None},
              "openset": {"sha256": hashlib.sha256((run / "openset.npz").read_bytes()).hexdigest()}}
    (run / "train.json").write_text(json.dumps(record))
    options = pipeline.Options(variants=("int8",), embedding=True, progress=False, calib_samples=45)
    pipeline.run(open_source(run), options, echo=lambda s: None)
    return {"run": run, "model": run / "model_int8.tflite", "embedder": run / "embedder_int8.tflite",
            "train": train, "val": val}
