"""Which head recipe generalises: cross-validation on pets/train, shift/ reported once per setting.

Every setting trains tl-train's head (float, on cached frozen-backbone embeddings) and is judged by
5-fold cross-validation on pets/train: out-of-fold accuracy, and dog recall at the operating point on
the held-out folds' door-camera views (IR night and small/off-centre), the conditions a porch adds.
Temperature and operating points are fitted on out-of-fold scores, as tl-train fits them on held-out
images. The recipe is chosen by these numbers alone; then each setting is trained once on all of
pets/train (pets/val for early stopping, temperature and operating points, as `tl-train --val-dir`
does) and shift/ is scored once: dog recall and non-dog -> "dog" at the operating point (single
photos), and at today's fixed threshold 0.8 uncalibrated. Open-set keep rates are in the same table.

Usage: python benchmarks/generalisation.py [--data ../shared/data] [--folds 5]
Writes benchmarks/generalisation.md and .json next to this script.
"""

import argparse
import datetime
import json
import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tl.device.data.dataset import scan_folder  # noqa: E402
from tl.device.model.contract import InputSpec  # noqa: E402
from tl.device.recognition.openset import normalise  # noqa: E402
from tl.train import calibration as cal  # noqa: E402
from tl.train import openset as tos  # noqa: E402

DOOR_VIEWS = ("ir", "small")
SETTINGS = {  # name: (training views, prior scale)
    "today (orig+flip)": (("orig", "flip"), 0.0),
    "+ door views (ir, small)": (("orig", "flip", "ir", "small"), 0.0),
    "+ ImageNet dog margin x0.5": (("orig", "flip"), 0.5),
    "+ door views + dog margin x0.5": (("orig", "flip", "ir", "small"), 0.5),
    "+ door views + dog margin x1": (("orig", "flip", "ir", "small"), 1.0),
    "+ IR view + dog margin x0.5": (("orig", "flip", "ir"), 0.5),
}


def decoded_views(folder, views, spec=InputSpec(224, 224, resize="squash")):
    """{view: (n, H, W, 3) uint8 model inputs} and labels of every readable image of a class-folder set."""
    from tl.device.model.image import load_image
    from tl.train.embeddings import view_image

    imgs, labels = {v: [] for v in views}, []
    for s in scan_folder(folder).samples:
        try:
            rgb = load_image(s.path)
        except ValueError:
            continue  # unreadable: left out, as tl-train does
        labels.append(s.label)
        for v in views:
            imgs[v].append(view_image(rgb, v, spec))
    return {v: np.stack(a) for v, a in imgs.items()}, np.array(labels)


def embed(folder, views, ctx):
    """{view: (n, D)}, labels, classes of every image in `folder` (cached embeddings)."""
    from tl.train.embeddings import embed_samples

    ds = scan_folder(folder)
    e = embed_samples(ds.samples, views, ctx["extract"], ctx["spec"], ctx["cache"], desc=Path(folder).name)
    return e.vectors, np.array([ds.samples[i].label for i in e.kept]), ds.classes


def fit_head(x, y, x_val, y_val, scale, prior, seed=0):
    """tl-train's default head (its HeadConfig), with the ImageNet prior at `scale`; returns the Keras model."""
    from tl.train.head import HeadConfig, build_head, train_head

    cfg = HeadConfig(prior_scale=scale)
    head = build_head(x.shape[1], 3, cfg, seed=seed, prior=prior, prior_dogs=[DOG])
    train_head(head, x, y, x_val, y_val, cfg, seed=seed)
    return head


def at_op(scores, y, dog, thresholds):
    """(dog recall, non-dog -> dog share) when "dog" must be the top class at or above its threshold."""
    said_dog = (scores.argmax(1) == dog) & (scores[:, dog] >= thresholds[dog])
    return float(said_dog[y == dog].mean()), float(said_dog[y != dog].mean())


def cross_validate(train, views, scale, prior, folds, seed=0):
    """Out-of-fold scores (orig and door views) of the setting on pets/train; returns the CV numbers."""
    vecs, y = train
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), int)
    for c in np.unique(y):
        idx = rng.permutation(np.where(y == c)[0])
        fold[idx] = np.arange(len(idx)) % folds
    oof = {v: np.zeros((len(y), 3)) for v in ("orig", *DOOR_VIEWS)}
    for f in range(folds):
        tr, te = fold != f, fold == f
        inner = rng.random(tr.sum()) < 0.15  # early stopping on a slice of the training folds
        xt = np.concatenate([vecs[v][tr][~inner] for v in views])
        yt = np.tile(y[tr][~inner], len(views))
        head = fit_head(xt, yt, vecs["orig"][tr][inner], y[tr][inner], scale, prior, seed)
        for v in oof:
            oof[v][te] = head.predict(vecs[v][te], verbose=0)
    t, _ = cal.calibrate(oof["orig"], y)
    scored = {v: cal.softmax(cal.log_scores(s) / t) for v, s in oof.items()}
    ops = cal.operating_points(scored["orig"], y, CLASSES)["thresholds"]
    th = [ops[c] for c in CLASSES]
    out = {"accuracy": float((scored["orig"].argmax(1) == y).mean()), "temperature": t, "thresholds": ops}
    for v in ("orig", *DOOR_VIEWS):
        out[f"dog_recall_{v}"], out[f"false_dog_{v}"] = at_op(scored[v], y, DOG, th)
    return out


def openset_numbers(stats, x, scores, y, quantile):
    """Share of correctly classified dogs and cats that stay known, and share of the rest called unknown."""
    pred = scores.argmax(1)
    radius = stats.radius(quantile)
    dist = np.array([tos.class_distances(e, stats.prototypes, stats.owner, 3)[p] for e, p in zip(normalise(x), pred)])
    known = dist <= radius[pred]
    pets = ((y == DOG) | (y == CAT)) & (pred == y)
    return float(known[pets].mean()), float((~known[y == OTHER]).mean())


def unknown_images(ctx, data):
    """Embeddings of things that must never be "dog": the coral non-pets, noise and solid colours."""
    from tl.device.model.image import load_image
    from tl.train.embeddings import view_image

    names = ("bird.png", "owl.jpg", "parrot.jpg", "grace_hopper.png")
    imgs = [view_image(load_image(Path(data) / "coral/images" / n), "orig", ctx["spec"]) for n in names]
    rng = np.random.default_rng(0)
    imgs += [rng.integers(0, 256, (224, 224, 3), dtype=np.uint8) for _ in range(4)]
    imgs += [np.full((224, 224, 3), c, np.uint8) for c in ((0, 0, 0), (255, 255, 255), (128, 128, 128),
                                                              (200, 60, 40), (40, 90, 200), (120, 100, 70))]
    return ctx["extract"](np.stack(imgs)), [*names, "noise x4", "solid colours x6"]


def full_run(train, val, shift, unknown, views, scale, prior, seed=0):
    """Trains on all of pets/train, calibrates on pets/val; scores pets/val, shift and the unknowns once."""
    vecs, y = train
    head = fit_head(np.concatenate([vecs[v] for v in views]), np.tile(y, len(views)), val[0], val[1], scale, prior, seed)
    raw = {k: head.predict(x, verbose=0) for k, x in (("val", val[0]), ("shift", shift[0]), ("unknown", unknown))}
    t, rec = cal.calibrate(raw["val"], val[1])
    s = {k: cal.softmax(cal.log_scores(v) / t) for k, v in raw.items()}
    ops = cal.operating_points(s["val"], val[1], CLASSES)
    th = [ops["thresholds"][c] for c in CLASSES]
    recall, false = at_op(s["shift"], shift[1], DOG, th)
    recall08, false08 = at_op(raw["shift"], shift[1], DOG, [0.8] * 3)
    unk_dog = (s["unknown"].argmax(1) == DOG) & (s["unknown"][:, DOG] >= th[DOG])
    out = {"val_accuracy": float((raw["val"].argmax(1) == val[1]).mean()),
           "shift_accuracy": float((raw["shift"].argmax(1) == shift[1]).mean()),
           "temperature": t, "thresholds": ops["thresholds"], "shift_dog_recall": recall, "shift_false_dog": false,
           "shift_dog_recall_0.8_uncalibrated": recall08, "shift_false_dog_0.8_uncalibrated": false08,
           "unknown_as_dog": int(unk_dog.sum())}
    stats = tos.compute_stats(vecs["orig"], y, CLASSES, seed, s["val"])
    door = tos.compute_stats(vecs["orig"], y, CLASSES, seed, s["val"], views=[vecs[v] for v in DOOR_VIEWS])
    for name, st, q in (("openset_today_q0.98", stats, 0.98), ("openset_doorviews_q0.99", door, 0.99),
                        ("openset_doorviews_q1", door, 1.0)):
        keep, reject = openset_numbers(st, shift[0], s["shift"], shift[1], q)
        out[name] = {"shift_keep": keep, "shift_other_unknown": reject,
                     "val_keep": openset_numbers(st, val[0], s["val"], val[1], q)[0]}
    return out


def device_check(model, data, night=True):
    """The converted model through the device's code on single photos: pets/val accuracy, shift at the
    model's own operating points, open-set keep rate, and the unknowns (coral non-pets, noise, colours).
    `night`: the classifier's night enhancement of monochrome photos (tl.device.model.night), as tl-device's default."""
    from tl.device.model.classifier import Classifier
    from tl.device.model.image import load_image
    from tl.device.model.metadata import read_operating_points
    from tl.device.recognition.recognizer import openset_for

    clf = Classifier(model, night=night)
    ops = read_operating_points(model)
    th = np.array([ops.get(c, 0.8) for c in clf.labels])
    oset = openset_for(clf)
    out = {"model": str(model), "operating_points": ops, "night_enhance": night}
    for name in ("pets/val", "shift"):
        ds = scan_folder(Path(data) / name, classes=clf.labels)
        y, top, ok, known, mono = [], [], [], [], 0
        for smp in ds.samples:
            scores = clf.classify_image(load_image(smp.path))
            mono += int(clf.night_frame)
            t = int(np.argmax(scores))
            y.append(smp.label), top.append(t), ok.append(scores[t] >= th[t])
            known.append(not oset.check(scores, clf.embedding()).unknown if oset else True)
        y, top, ok, known = map(np.array, (y, top, ok, known))
        dog = clf.labels.index("dog")
        said_dog = (top == dog) & ok
        pets = (y != clf.labels.index("other")) & (top == y)
        out[name] = {"accuracy": float((top == y).mean()), "dog_recall_at_op": float(said_dog[y == dog].mean()),
                     "non_dog_as_dog_at_op": float(said_dog[y != dog].mean()), "non_dog": int((y != dog).sum()),
                     "openset_keep_correct_dogs_cats": float(known[pets].mean()),
                     "dog_at_op_and_known": float((said_dog & known)[y == dog].mean()),
                     "non_dog_as_dog_at_op_and_known": float((said_dog & known)[y != dog].mean()),
                     "night_enhanced_photos": mono}
    rng = np.random.default_rng(0)
    unknown = [load_image(Path(data) / "coral/images" / n) for n in ("bird.png", "owl.jpg", "parrot.jpg", "grace_hopper.png")]
    unknown += [rng.integers(0, 256, (240, 320, 3), dtype=np.uint8) for _ in range(4)]
    unknown += [np.full((240, 320, 3), c, np.uint8) for c in ((0, 0, 0), (255, 255, 255), (128, 128, 128), (200, 60, 40))]
    as_dog = 0
    for rgb in unknown:
        scores = clf.classify_image(rgb)
        t = int(np.argmax(scores))
        as_dog += int(clf.labels[t] == "dog" and scores[t] >= th[t])
    out["unknowns_as_dog_at_op"] = f"{as_dog} of {len(unknown)}"
    return out


def study_context():
    """({"extract", "spec", "cache"}, ImageNet prior (kernel, bias)) of tl-train's default backbone (starts TensorFlow)."""
    from tl.train.quiet import import_tensorflow

    import_tensorflow()
    from tl.train.backbones import BackboneSpec, build_backbone
    from tl.train.embeddings import EmbeddingCache, default_cache_dir
    from tl.train.prior import load_prior
    from tl.train.trainer import _extractor

    bb = BackboneSpec()
    extract, dim = _extractor(build_backbone(bb))
    ctx = {"extract": extract, "spec": InputSpec(224, 224, resize="squash"),
           "cache": EmbeddingCache(default_cache_dir(), bb.cache_key("squash"))}
    return ctx, load_prior(bb, dim)[:2]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data"))
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--settings", nargs="*", help="Only these settings (names as in the table); default: all")
    ap.add_argument("--model", nargs="*", help="Instead of the study: check these converted .tflite files on the device path")
    ap.add_argument("--no-night-enhance", action="store_true", help="with --model: classify monochrome photos as they are")
    args = ap.parse_args()
    if args.model:
        checks = [device_check(m, args.data, night=not args.no_night_enhance) for m in args.model]
        (HERE / "generalisation_device.json").write_text(json.dumps(checks, indent=1))
        print(json.dumps(checks, indent=1))
        return
    ctx, prior = study_context()
    data = Path(args.data)
    tv, ty, classes = embed(data / "pets/train", ("orig", "flip", *DOOR_VIEWS), ctx)
    assert classes == CLASSES, classes
    vv, vy, _ = embed(data / "pets/val", ("orig",), ctx)
    sv, sy, _ = embed(data / "shift", ("orig",), ctx)
    unknown, unknown_names = unknown_images(ctx, data)
    out = HERE / "generalisation.json"
    results = json.loads(out.read_text())["settings"] if args.settings and out.is_file() else {}  # keep the others
    for name, (views, scale) in SETTINGS.items():
        if args.settings and name not in args.settings:
            continue
        cv = cross_validate((tv, ty), views, scale, prior, args.folds)
        full = full_run((tv, ty), (vv["orig"], vy), (sv["orig"], sy), unknown, views, scale, prior)
        results[name] = {"views": list(views), "prior_scale": scale, "cv": cv, "full": full}
        print(name, json.dumps(results[name]), flush=True)
    record = {"date": datetime.date.today().isoformat(), "folds": args.folds, "data": str(data),
              "unknown_images": unknown_names, "settings": results}
    out.write_text(json.dumps(record, indent=1))
    print(f"wrote {out}")


CLASSES = ["cat", "dog", "other"]
CAT, DOG, OTHER = 0, 1, 2

if __name__ == "__main__":
    main()
