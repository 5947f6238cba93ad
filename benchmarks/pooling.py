"""Study: does another pooling of the backbone's last feature map generalise better than the average? (issue 12)

tl-train pools MobileNetV2's 7x7x1280 map by its average (GAP), the features ImageNet's top was trained on.
Each setting here feeds tl-train's default head (orig+flip rows, ImageNet dog margin x0.5 read from GAP as
in the model) with other features: GAP and global max pooling side by side (a subject that fills a part of
the frame), GAP and generalised-mean pooling (p = 3), and GAP with block_16's 320-channel average (less
ImageNet-specific). The ImageNet top reads the GAP part only (its kernel padded with zero rows). Judged by 5-fold cross-validation on pets/train (generalisation.py's
`cross_validate`: out-of-fold accuracy, dog recall at the operating point on originals and the door views
ir, small); shift is scored once per setting (`full_run`).

    python benchmarks/pooling.py [--data ../shared/data] [--folds 5]

Writes benchmarks/pooling.json (numbers quoted in benchmarks/generalisation.md).
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

PARTS = {"gap": slice(0, 1280), "gmp": slice(1280, 2560), "gem": slice(2560, 3840), "b16": slice(3840, 4160)}
SETTINGS = {"GAP (today)": ("gap",), "GAP + max": ("gap", "gmp"), "GAP + GeM p=3": ("gap", "gem"), "GAP + block_16 average": ("gap", "b16")}


def pooled_features():
    """A function: (n, 224, 224, 3) uint8 -> (n, 4160) [GAP, GMP, GeM, block_16 GAP] of the default backbone."""
    import keras
    import tensorflow as tf

    from tl.train.backbones import BackboneSpec, build_backbone

    features = build_backbone(BackboneSpec())
    base = next(layer for layer in features.layers if isinstance(layer, keras.Model))
    both = keras.Model(base.input, [base.output, base.get_layer("block_16_project_BN").output])
    preprocess = features.get_layer("preprocess")

    @tf.function
    def run(x):
        last, b16 = both(preprocess(tf.cast(x, tf.float32)), training=False)
        gem = tf.reduce_mean(tf.maximum(last, 1e-6) ** 3, [1, 2]) ** (1 / 3)
        return tf.concat([tf.reduce_mean(last, [1, 2]), tf.reduce_max(last, [1, 2]), gem, tf.reduce_mean(b16, [1, 2])], 1)

    return lambda x: np.concatenate([run(tf.constant(x[i : i + 64])).numpy() for i in range(0, len(x), 64)])


def embed(folder, views, extract):
    import generalisation as G

    imgs, labels = G.decoded_views(folder, views)
    return {v: extract(a) for v, a in imgs.items()}, labels


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data"))
    ap.add_argument("--folds", type=int, default=5)
    args = ap.parse_args()
    import generalisation as G

    from tl.train.backbones import BackboneSpec
    from tl.train.prior import load_prior
    from tl.train.quiet import import_tensorflow

    import_tensorflow()
    prior = load_prior(BackboneSpec(), 1280)[:2]
    extract = pooled_features()
    data = Path(args.data)
    t0 = time.perf_counter()
    tv, ty = embed(data / "pets/train", ("orig", "flip", "ir", "small"), extract)
    vv, vy = embed(data / "pets/val", ("orig",), extract)
    sv, sy = embed(data / "shift", ("orig",), extract)
    print(f"features: {time.perf_counter() - t0:.0f} s", flush=True)
    results = {}
    for name, parts in SETTINGS.items():
        def pick(x, parts=parts):  # GAP first (the prior reads it), then the setting's other features
            return np.concatenate([x[:, PARTS["gap"]]] + [x[:, PARTS[p]] for p in parts if p != "gap"], 1)

        train = {v: pick(x) for v, x in tv.items()}
        extra = train["orig"].shape[1] - 1280
        padded = (np.concatenate([prior[0], np.zeros((extra, prior[0].shape[1]), prior[0].dtype)]), prior[1])
        cv = G.cross_validate((train, ty), ("orig", "flip"), 0.5, padded, args.folds)
        full = G.full_run((train, ty), (pick(vv["orig"]), vy), (pick(sv["orig"]), sy), pick(vv["orig"])[:1],
                          ("orig", "flip"), 0.5, padded)
        keep = ("val_accuracy", "shift_accuracy", "thresholds", "shift_dog_recall", "shift_false_dog")
        results[name] = {"cv": cv, "full": {k: full[k] for k in keep}}
        print(name, json.dumps(results[name]), flush=True)
    (HERE / "pooling.json").write_text(json.dumps({"folds": args.folds, "settings": results}, indent=1))


if __name__ == "__main__":
    main()
