"""Study: can the backbone's last block and 1x1 conv learn, on a CPU, to see infrared frames as their colour originals?

The frozen backbone's features up to block_15 are computed once for pets/train, pets/val and shift (views
orig, flip and the training's `ir` night rendering). A copy of the tail (block_16 + Conv_1, 0.9 M weights,
BatchNorm frozen) is trained, without labels, so that a photo's IR view gives the embedding the original tail
gives its colour original (and the originals and flips keep theirs, weighted --keep). Then tl-train's default head
(ImageNet dog margin x0.5) is trained on each tail's pets/train embeddings, calibrated and given its dog operating
point on pets/val, and scored: pets/val and its IR views (chosen on these), shift and its IR views (reported).

    python benchmarks/night_tail.py [--epochs 8] [--lr 1e-4] [--keep 1.0]
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

TAIL = ("block_16_expand", "block_16_expand_BN", "block_16_expand_relu", "block_16_depthwise", "block_16_depthwise_BN",
        "block_16_depthwise_relu", "block_16_project", "block_16_project_BN", "Conv_1", "Conv_1_bn", "out_relu")
VIEWS = ("orig", "flip", "ir")


def cut_models():
    """(pixels -> block_15 features, the original tail: features -> pooled embedding, the base model)."""
    import keras

    from tl.train.backbones import BackboneSpec, build_backbone

    features = build_backbone(BackboneSpec())
    base = next(layer for layer in features.layers if isinstance(layer, keras.Model))
    pixels = keras.Input((224, 224, 3))
    head_part = keras.Model(pixels, keras.Model(base.input, base.get_layer("block_15_add").output)(
        features.get_layer("preprocess")(pixels)))
    t_in = keras.Input((7, 7, 160))
    y = t_in
    for name in TAIL:
        y = base.get_layer(name)(y)
    return head_part, keras.Model(t_in, keras.layers.GlobalAveragePooling2D()(y))


def block15(model, folder, views=VIEWS):
    """{view: (n, 7, 7, 160) float16} and labels of every readable image in `folder`."""
    from generalisation import decoded_views

    imgs, labels = decoded_views(folder, views)
    return ({v: model.predict(a.astype(np.float32), batch_size=32, verbose=0).astype(np.float16)
             for v, a in imgs.items()}, labels)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data"))
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--keep", type=float, default=1.0, help="weight of originals and flips keeping their embedding")
    args = ap.parse_args()
    from tl.train.quiet import import_tensorflow

    import_tensorflow()
    import generalisation as G
    import keras

    from tl.train import calibration as cal
    from tl.train.backbones import BackboneSpec
    from tl.train.prior import load_prior

    head_part, teacher = cut_models()
    t0 = time.perf_counter()
    sets = {k: block15(head_part, Path(args.data) / k) for k in ("pets/train", "pets/val", "shift")}
    print(f"block_15 features: {time.perf_counter() - t0:.0f} s", flush=True)
    student = keras.models.clone_model(teacher)
    student.set_weights(teacher.get_weights())
    for layer in student.layers:
        layer.trainable = not isinstance(layer, keras.layers.BatchNormalization)
    emb = {k: {v: teacher.predict(a.astype(np.float32), batch_size=128, verbose=0) for v, a in f.items()}
           for k, (f, _) in sets.items()}
    tr, ty = sets["pets/train"]
    x = np.concatenate([tr["ir"], tr["orig"], tr["flip"]]).astype(np.float32)
    target = np.concatenate([emb["pets/train"]["orig"], emb["pets/train"]["orig"], emb["pets/train"]["flip"]])
    weight = np.concatenate([np.ones(len(ty)), np.full(2 * len(ty), args.keep)]).astype(np.float32)
    student.compile(optimizer=keras.optimizers.Adam(args.lr), loss="mse")
    keras.utils.set_random_seed(0)
    t0 = time.perf_counter()
    student.fit(x, target, sample_weight=weight, epochs=args.epochs, batch_size=32, shuffle=True, verbose=0)
    print(f"tail trained: {time.perf_counter() - t0:.0f} s ({args.epochs} epochs, lr {args.lr:g}, keep {args.keep:g})")
    tuned = {k: {v: student.predict(a.astype(np.float32), batch_size=128, verbose=0) for v, a in f.items()}
             for k, (f, _) in sets.items()}
    prior = load_prior(BackboneSpec(), 1280)[:2]
    vy, sy = sets["pets/val"][1], sets["shift"][1]
    for name, e in (("ImageNet tail (today)", emb), ("tail tuned on IR", tuned)):
        keras.utils.set_random_seed(0)
        head = G.fit_head(np.concatenate([e["pets/train"]["orig"], e["pets/train"]["flip"]]), np.tile(ty, 2),
                          e["pets/val"]["orig"], vy, 0.5, prior, 0)
        raw = head.predict(e["pets/val"]["orig"], verbose=0)
        t, _ = cal.calibrate(raw, vy)
        th = cal.operating_points(cal.softmax(cal.log_scores(raw) / t), vy, G.CLASSES)["thresholds"]
        row = [f"{name}: dog threshold {th['dog']:.3f}"]
        for label, key, view, y in (("pets/val", "pets/val", "orig", vy), ("pets/val IR", "pets/val", "ir", vy),
                                    ("shift", "shift", "orig", sy), ("shift IR", "shift", "ir", sy)):
            s = cal.softmax(cal.log_scores(head.predict(e[key][view], verbose=0)) / t)
            recall, false = G.at_op(s, y, G.DOG, [th[c] for c in G.CLASSES])
            row.append(f"{label} top-1 {(s.argmax(1) == y).mean():.3f}, dog recall {recall:.3f}, false dogs {false:.3f}, "
                       f"dogs as cat {(s.argmax(1)[y == G.DOG] == G.CAT).mean():.3f}")
        print("\n  ".join(row), flush=True)


if __name__ == "__main__":
    main()
