"""Study: does fine-tuning the backbone's tail on pets/train help on photos of other sources? (issue 12)

LP-FT with learning without forgetting, on the CPU: the frozen backbone's block_15 features are computed
once (views orig, flip and the training's door views ir, small); tl-train's default head is trained on the
frozen embeddings (LP), then the tail (block_16 + Conv_1, BatchNorm frozen) and the head are trained together
(FT) on orig+flip under the head's cross-entropy plus `lwf` x a distillation loss that keeps the ImageNet
top's 1000 scores (temperature 2) where the original tail put them — the ImageNet dog margin the head leans
on is read from the same features, so it must not drift. Then tl-train's head is refitted on the tuned
embeddings (as tl-train would), calibrated and given its operating points on pets/val, and scored once:
pets/val and its door views, shift (single photos). `--folds` adds 5-fold cross-validation on pets/train
(the tail tuned per fold), the numbers a setting is chosen by.

    python benchmarks/finetune_tail.py [--settings 1e-4:6:1 1e-3:8:1 1e-3:8:0.1] [--folds 5]

Writes benchmarks/finetune_tail.json (numbers quoted in benchmarks/generalisation.md).
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

# Views computed per set: training rows and the CV's door views; pets/val's door views; shift as it is.
SET_VIEWS = {"pets/train": ("orig", "flip", "ir", "small"), "pets/val": ("orig", "ir", "small"), "shift": ("orig",)}
TEMPERATURE = 2.0  # of the ImageNet scores distilled


def parse_setting(text):
    """"LR:EPOCHS:LWF" -> (lr, epochs, lwf)."""
    lr, epochs, lwf = text.split(":")
    return float(lr), int(epochs), float(lwf)


def tune(teacher, feats, y, val, prior, setting, seed):
    """LP then FT of a copy of `teacher` (the tail) on `feats` {view: block_15 features}; returns the tuned tail."""
    import generalisation as G
    import keras

    from tl.train.head import one_hot

    lr, epochs, lwf = setting
    kernel, bias = prior
    keras.utils.set_random_seed(seed)
    frozen = {v: teacher.predict(feats[v].astype(np.float32), batch_size=128, verbose=0) for v in ("orig", "flip")}
    val_emb = teacher.predict(val[0].astype(np.float32), batch_size=128, verbose=0)
    head = G.fit_head(np.concatenate([frozen["orig"], frozen["flip"]]), np.tile(y, 2), val_emb, val[1], 0.5, prior, seed)
    student = keras.models.clone_model(teacher)
    student.set_weights(teacher.get_weights())
    for layer in student.layers:
        layer.trainable = not isinstance(layer, keras.layers.BatchNormalization)
    for layer in head.layers:
        layer.trainable = not layer.name.startswith("imagenet")
    x_in = keras.Input(feats["orig"].shape[1:])
    emb = student(x_in)
    cls = keras.layers.Activation("linear", name="cls")(head(emb))
    top = keras.layers.Dense(kernel.shape[1], trainable=False, name="top")
    imnet = keras.layers.Activation("linear", name="imnet")(top(emb))
    model = keras.Model(x_in, [cls, imnet])
    top.set_weights([kernel, bias])

    def distill(soft, logits):
        return keras.ops.mean(keras.ops.sum(-soft * keras.ops.log_softmax(logits / TEMPERATURE, axis=-1), -1)) * TEMPERATURE**2

    model.compile(keras.optimizers.Adam(lr), loss={"cls": keras.losses.CategoricalCrossentropy(label_smoothing=0.1),
                                                   "imnet": distill}, loss_weights={"cls": 1.0, "imnet": lwf})
    x = np.concatenate([feats["orig"], feats["flip"]]).astype(np.float32)
    z = np.concatenate([frozen["orig"], frozen["flip"]]) @ kernel + bias
    soft = np.exp((z - z.max(1, keepdims=True)) / TEMPERATURE)
    soft /= soft.sum(1, keepdims=True)
    model.fit(x, {"cls": one_hot(np.tile(y, 2), 3), "imnet": soft.astype(np.float32)}, epochs=epochs, batch_size=32,
              shuffle=True, verbose=0)
    return student


def scored(head, emb, t):
    from tl.train import calibration as cal

    return cal.softmax(cal.log_scores(head.predict(emb, verbose=0)) / t)


def recall_at_false(scores, y, dog, false=0.02):
    """Dog recall at the threshold that `false` of the non-dogs reach (a ceiling: the threshold is read off these images)."""
    from tl.train import calibration as cal

    lo = cal.log_scores(scores)
    odds = lo[:, dog] - np.logaddexp.reduce(np.delete(lo, dog, axis=1), axis=1)
    neg = np.sort(odds[y != dog])[::-1]
    return float((odds[y == dog] > neg[int(false * len(neg))]).mean())


def full_run(tail, sets, prior, seed):
    """tl-train's head on `tail`'s embeddings, calibrated on pets/val; numbers on pets/val (and door views) and shift."""
    import generalisation as G

    from tl.train import calibration as cal

    emb = {k: {v: tail.predict(x.astype(np.float32), batch_size=128, verbose=0) for v, x in f.items()}
           for k, (f, _) in sets.items()}
    ty, vy, sy = (sets[k][1] for k in ("pets/train", "pets/val", "shift"))
    head = G.fit_head(np.concatenate([emb["pets/train"]["orig"], emb["pets/train"]["flip"]]), np.tile(ty, 2),
                      emb["pets/val"]["orig"], vy, 0.5, prior, seed)
    t, _ = cal.calibrate(head.predict(emb["pets/val"]["orig"], verbose=0), vy)
    ops = cal.operating_points(scored(head, emb["pets/val"]["orig"], t), vy, G.CLASSES)["thresholds"]
    th = [ops[c] for c in G.CLASSES]
    out = {"dog_threshold": ops["dog"]}
    for name, key, view, y in (("pets/val", "pets/val", "orig", vy), ("pets/val ir", "pets/val", "ir", vy),
                               ("pets/val small", "pets/val", "small", vy), ("shift", "shift", "orig", sy)):
        s = scored(head, emb[key][view], t)
        recall, false = G.at_op(s, y, G.DOG, th)
        out[name] = {"top1": float((s.argmax(1) == y).mean()), "dog_recall_at_op": recall, "non_dog_as_dog_at_op": false,
                     "dog_recall_at_2pct_false": recall_at_false(s, y, G.DOG)}
    return out


def cross_validate(teacher, sets, prior, setting, folds, seed):
    """Out-of-fold scores on pets/train (tail tuned per fold when `setting`); CV accuracy and dog recall at op."""
    import generalisation as G

    from tl.train import calibration as cal

    feats, y = sets["pets/train"]
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), int)
    for c in np.unique(y):
        idx = rng.permutation(np.where(y == c)[0])
        fold[idx] = np.arange(len(idx)) % folds
    oof = {v: np.zeros((len(y), 3)) for v in ("orig", "ir", "small")}
    for f in range(folds):
        train_idx = np.where(fold != f)[0]
        inner = rng.random(len(train_idx)) < 0.15
        fit, stop = train_idx[~inner], train_idx[inner]
        tail = teacher
        if setting:
            tail = tune(teacher, {v: feats[v][fit] for v in ("orig", "flip")}, y[fit], (feats["orig"][stop], y[stop]),
                        prior, setting, seed)

        def emb(v, idx, tail=tail):
            return tail.predict(feats[v][idx].astype(np.float32), batch_size=128, verbose=0)

        head = G.fit_head(np.concatenate([emb("orig", fit), emb("flip", fit)]), np.tile(y[fit], 2), emb("orig", stop),
                          y[stop], 0.5, prior, seed)
        held = np.where(fold == f)[0]
        for v in oof:
            oof[v][held] = head.predict(emb(v, held), verbose=0)
    t, _ = cal.calibrate(oof["orig"], y)
    s = {v: cal.softmax(cal.log_scores(o) / t) for v, o in oof.items()}
    ops = cal.operating_points(s["orig"], y, G.CLASSES)["thresholds"]
    out = {"accuracy": float((s["orig"].argmax(1) == y).mean()), "dog_threshold": ops["dog"]}
    for v in s:
        out[f"dog_recall_{v}"], out[f"non_dog_as_dog_{v}"] = G.at_op(s[v], y, G.DOG, [ops[c] for c in G.CLASSES])
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data"))
    ap.add_argument("--settings", nargs="*", default=["1e-4:6:1", "1e-3:8:1", "1e-3:8:0.1"],
                    help="LR:EPOCHS:LWF of each fine-tuning tried (default: %(default)s)")
    ap.add_argument("--folds", type=int, default=0, help="also cross-validate each setting on pets/train (0: no)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    from tl.train.quiet import import_tensorflow

    import_tensorflow()
    import night_tail as NT

    from tl.train.backbones import BackboneSpec
    from tl.train.prior import load_prior

    head_part, teacher = NT.cut_models()
    t0 = time.perf_counter()
    sets = {k: NT.block15(head_part, Path(args.data) / k, views) for k, views in SET_VIEWS.items()}
    print(f"block_15 features: {time.perf_counter() - t0:.0f} s", flush=True)
    prior = load_prior(BackboneSpec(), 1280)[:2]
    val = (sets["pets/val"][0]["orig"], sets["pets/val"][1])
    results = {}
    for name in ["frozen (today)", *args.settings]:
        setting = None if name.startswith("frozen") else parse_setting(name)
        t0 = time.perf_counter()
        tail = teacher if setting is None else tune(teacher, sets["pets/train"][0], sets["pets/train"][1], val, prior,
                                                    setting, args.seed)
        row = {"seconds": round(time.perf_counter() - t0), "full": full_run(tail, sets, prior, args.seed)}
        if args.folds:
            row["cv"] = cross_validate(teacher, sets, prior, setting, args.folds, args.seed)
        results[name if setting is None else f"lr {setting[0]:g}, {setting[1]} epochs, lwf {setting[2]:g}"] = row
        print(name, json.dumps(row), flush=True)
    (HERE / "finetune_tail.json").write_text(json.dumps({"seed": args.seed, "folds": args.folds, "results": results},
                                                        indent=1))


if __name__ == "__main__":
    main()
