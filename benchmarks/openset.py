"""Open-set rejection and enrolment on the pets model: unknowns never open the door, at what cost.

Usage: python benchmarks/openset.py [--data ../shared/data/pets] [--coral ../shared/data/coral/images] [--run RUN_DIR]
Trains a pets model with tl-train (unless --run names one), converts it twice with tl-convert --all:
once as before this feature (--no-openset: one output) and once with open-set statistics, the
embedding output and the embedder (--embedding). Then, through tl-device's own code:
  - in-distribution cost: int8 accuracy on pets/val with rejection, per quantile;
  - unknowns: Coral's bird, owl, parrot and Grace Hopper (as frames, and pasted on a porch) and
    synthetic frames (empty porch, noise, solid colours): rejected or not, and a door replay;
  - per-frame cost: frame -> scores (one output) vs frame -> scores + embedding + open-set + identity;
  - enrolment of 10 photos (tl-device enroll, wall time);
  - int8 vs float32 size / accuracy / agreement / latency, one output vs two.
Writes benchmarks/openset.md (and .json) next to this script.
"""

import argparse
import datetime
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from tl.device.model.image import load_image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import scene  # noqa: E402  (porch and paste, as `make demo` builds its scene)
from timing import interleaved_rounds  # noqa: E402

SHARED = HERE.parent.parent / "shared" / "data"
UNKNOWN_PHOTOS = ("bird.png", "owl.jpg", "parrot.jpg", "grace_hopper.png")
KNOWN_PHOTOS = ("cat.png", "cat_720p.jpg", "imprinting_cat_train_0.png", "imprinting_cat_test_0.png",
                "imprinting_dog_train_0.png", "imprinting_dog_test_0.png", "pets.jpg")
SOLID = {"black": (0, 0, 0), "white": (255, 255, 255), "grey": (128, 128, 128), "red": (0, 0, 255),
         "green": (0, 255, 0), "blue": (255, 0, 0), "brown": (40, 80, 120), "orange": (0, 140, 255)}
ROUNDS, PER_ROUND = 7, 40


def tool(name, *args):
    """Runs a tl-edge console script; returns (wall seconds, stdout)."""
    t0 = time.perf_counter()
    out = subprocess.run([str(Path(sys.executable).parent / name), *map(str, args)], check=True,
                         capture_output=True, text=True)
    return time.perf_counter() - t0, out.stdout


def unknown_frames(coral, seed=0):
    """{name: BGR frame}: the Coral unknowns as frames and pasted on the porch, and synthetic frames."""
    rng = np.random.default_rng(seed)
    frames = {}
    for name in UNKNOWN_PHOTOS:
        bgr = load_image(coral / name, bgr=True)
        frames[name] = bgr
        frames[f"{name} on porch"] = scene.paste(scene.porch(rng), bgr[:, :, ::-1])
    for i in range(3):
        frames[f"empty porch {i}"] = scene.porch(rng)
    frames["uniform noise"] = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    frames["gaussian noise"] = np.clip(rng.normal(128, 50, (480, 640, 3)), 0, 255).astype(np.uint8)
    frames["gradient"] = np.broadcast_to(np.linspace(0, 255, 640, dtype=np.uint8)[None, :, None], (480, 640, 3)).copy()
    for name, bgr in SOLID.items():
        frames[f"solid {name}"] = np.full((480, 640, 3), bgr, np.uint8)
    return frames


def judge_frames(classifier, frames):
    """{name: (label, top score, distance to the predicted class)} through the device's classifier."""
    from tl.device.recognition.openset import class_distances

    stats = classifier_stats(classifier)
    out = {}
    for name, bgr in frames.items():
        scores = classifier.classify_frame(bgr)
        top = int(np.argmax(scores))
        d = class_distances(classifier.embedding(), stats.prototypes, stats.owner, len(stats.labels))[top]
        out[name] = (classifier.labels[top], float(scores[top]), float(d))
    return out


def classifier_stats(classifier):
    from tl.device.recognition.openset import stats_from_model

    return stats_from_model(classifier.info)


def val_judgements(classifier, val_dir):
    """(truth, predicted, top score, distance) arrays for pets/val through the device's classifier."""
    from tl.device.data.dataset import scan_folder

    rows = []
    for s in scan_folder(val_dir).samples:
        label, score, dist = judge_frames(classifier, {"x": load_image(s.path)[:, :, ::-1]})["x"]
        rows.append((s.label, classifier.labels.index(label), score, dist))
    return [np.array(c) for c in zip(*rows)]


def sweep(classifier, val, unknowns, allow="dog", threshold=0.8):
    """Per quantile: val accuracy with rejection, and the unknown frames that would still count as `allow`."""
    from tl.device.recognition.openset import QUANTILES, OpenSet

    truth, pred, top, dist = val
    stats = classifier_stats(classifier)
    shift = classifier.info.extra["openset"]["shift"]
    rows = []
    for q in (None, *QUANTILES, "softmax"):
        if q is None:
            rej_val = np.zeros(len(pred), bool)
            rej = {n: False for n in unknowns}
        elif q == "softmax":
            floor = OpenSet(stats, use_embedding=False).limits
            rej_val = top < floor
            rej = {n: u[1] < floor for n, u in unknowns.items()}
        else:
            radius = OpenSet(stats, q, shift).limits
            rej_val = dist > radius[pred]
            rej = {n: u[2] > radius[classifier.labels.index(u[0])] for n, u in unknowns.items()}
        correct = pred == truth
        openers = [n for n, u in unknowns.items() if u[0] == allow and u[1] >= threshold and not rej[n]]
        rows.append({"quantile": "off" if q is None else q, "val_rejected": float(rej_val.mean()),
                     "val_accuracy": float((correct & ~rej_val).mean()), "unknown_rejected": int(sum(rej.values())),
                     "unknowns": len(unknowns), "would_open": openers})
    return rows


def door_replay(model, frames, folder, openset):
    """Each unknown frame for 2 s at 10 fps, one after another: the door's events with open-set on or off."""
    from tl.device.door import config
    from tl.device.door.events import read_events
    from tl.device.door.loop import run_door

    folder.mkdir(parents=True, exist_ok=True)
    if not any(folder.iterdir()):
        i = 0
        for bgr in frames.values():
            for _ in range(20):
                cv2.imwrite(str(folder / f"frame_{i:05d}.png"), cv2.resize(bgr, (640, 480)))
                i += 1
    events = folder.parent / f"events_{openset}.jsonl"
    events.unlink(missing_ok=True)
    run_door(config.load_config(None, {"model": str(model), "source": str(folder), "allow": ("dog",), "door": "none",
                                       "events": str(events), "openset": openset}))
    return read_events(events)


def frame_cost(single, double, recognizer, frame, threads):
    """Median ms per frame (prepare + invoke + read) and per invoke, one output vs two + open-set + identity."""
    from tl.device.model.classifier import Classifier

    a, b = Classifier(single, threads=threads), Classifier(double, threads=threads)
    jobs = {"one output: frame -> scores": lambda: a.classify_frame(frame),
            "two outputs: frame -> scores + embedding + open-set + identity":
                lambda: recognizer.judge(b.classify_frame(frame), b),
            "invoke, one output": a.interpreter.invoke, "invoke, two outputs": b.interpreter.invoke}
    per_round = interleaved_rounds(jobs, ROUNDS, PER_ROUND)
    return {k: statistics.median(v) for k, v in per_round.items()}


def interleaved_latency(paths, threads=1):
    """Median ms/invoke of each model, interleaved rounds (as benchmarks/quantization.py times them)."""
    from tl.device.model.classifier import Classifier

    models = {k: Classifier(p, threads=threads) for k, p in paths.items()}
    for m in models.values():
        m.warm_up()
    per = interleaved_rounds({k: m.interpreter.invoke for k, m in models.items()}, ROUNDS, PER_ROUND, warmup=0)
    return {k: statistics.median(v) for k, v in per.items()}


def views(rgb, n, rng):
    """`n` augmented views of one photo (crop 70-95 %, flip, brightness): a stand-in for photos of one pet."""
    h, w = rgb.shape[:2]
    out = []
    for _ in range(n):
        f = rng.uniform(0.7, 0.95)
        ch, cw = int(h * f), int(w * f)
        y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        v = rgb[y : y + ch, x : x + cw]
        v = v[:, ::-1] if rng.random() < 0.5 else v
        out.append(np.clip(v.astype(np.float32) * rng.uniform(0.75, 1.25), 0, 255).astype(np.uint8))
    return out


def pseudo_identity(embedder_path, dogs, folder):
    """Enrols 10 views of one val dog photo; scores 10 other views of it against the other val dogs."""
    from tl.device.recognition.embedder import Embedder
    from tl.device.recognition.enroll import enroll
    from tl.device.recognition.gallery import load_gallery

    rng = np.random.default_rng(0)
    embedder = Embedder(embedder_path)
    rex = load_image(dogs[0])
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, v in enumerate(views(rex, 10, rng)):
        paths.append(folder / f"rex_{i}.png")
        cv2.imwrite(str(paths[-1]), v[:, :, ::-1])
    result = enroll(embedder, "rex", paths, folder / "gallery.npz")
    ident = load_gallery(folder / "gallery.npz").identities["rex"]
    pos = [ident.similarity_to(embedder.embed_image(v)) for v in views(rex, 10, rng)]
    neg = [ident.similarity_to(embedder.embed_image(load_image(p))) for p in dogs[1:]]
    t = ident.threshold
    return {"threshold": t, "enrolment_similarity": [round(float(x), 3) for x in result.similarities],
            "positives": [min(pos), max(pos)], "negatives": [min(neg), max(neg)], "negatives_n": len(neg),
            "true_accept": float(np.mean(np.array(pos) >= t)), "false_accept": float(np.mean(np.array(neg) >= t))}


def enrolment(embedder, photos, gallery):
    wall, out = tool("tl-device", "enroll", "--model", embedder, "--name", "rex", *photos, "--gallery", gallery)
    inner = float(re.search(r"in ([0-9.]+) s", out).group(1))
    return {"photos": len(photos), "wall_s": wall, "enroll_s": inner, "output": out.strip().splitlines()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=SHARED / "pets")
    ap.add_argument("--coral", type=Path, default=SHARED / "coral" / "images")
    ap.add_argument("--run", type=Path, default=None, help="an existing tl-train RUN_DIR (else one is trained)")
    a = ap.parse_args()
    from report_openset import write_report

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        run = a.run or tmp / "run"
        if a.run is None:
            tool("tl-train", a.data / "train", "--out", run, "--val-dir", a.data / "val")
        t_one, _ = tool("tl-convert", run, "--all", "--no-openset", "--out", tmp / "one", "-q")
        t_two, _ = tool("tl-convert", run, "--all", "--embedding", "--out", tmp / "two", "-q")
        one, two = (json.loads((tmp / d / "convert.json").read_text()) for d in ("one", "two"))
        results = measure(a, tmp, one, two)
        results.update(convert_s={"one_output": t_one, "two_outputs_and_embedder": t_two})
    results["date"] = datetime.date.today().isoformat()
    from tl.device.data.sysinfo import machine_line

    results["machine"] = machine_line()
    (HERE / "openset.json").write_text(json.dumps(results, indent=2, default=str))
    text = write_report(results, HERE / "openset.md")
    print(text)


def measure(a, tmp, one, two):
    from tl.device.door import config
    from tl.device.model.classifier import Classifier
    from tl.device.recognition.recognizer import make_recognizer

    model = tmp / "two" / "model_int8.tflite"
    classifier = Classifier(model)
    frames = unknown_frames(a.coral)
    unknowns = judge_frames(classifier, frames)
    known = judge_frames(classifier, {n: load_image(a.coral / n, bgr=True) for n in KNOWN_PHOTOS})
    val = val_judgements(classifier, a.data / "val")
    rows = sweep(classifier, val, unknowns)
    replays = {str(o): door_replay(model, frames, tmp / "replay" / "frames", o) for o in (True, False)}
    dogs = sorted((a.data / "val" / "dog").iterdir())[:10]
    enrol = enrolment(tmp / "two" / "embedder_int8.tflite", dogs, tmp / "gallery.npz")
    identity = pseudo_identity(tmp / "two" / "embedder_int8.tflite", sorted((a.data / "val" / "dog").iterdir()),
                               tmp / "rex")
    cfg = config.load_config(None, {"model": str(model), "source": ".", "allow": ("dog",),
                                    "gallery": str(tmp / "gallery.npz"), "require_identity": ("rex",)})

    def recognizer(threads):
        return make_recognizer(Classifier(model, threads=threads), cfg.openset, cfg.openset_quantile, cfg.gallery,
                               cfg.require_identity, cfg.identity_threshold)

    porch_dog = scene.paste(scene.porch(np.random.default_rng(1)), load_image(dogs[0]))
    cost = {t: frame_cost(tmp / "one" / "model_int8.tflite", model, recognizer(t),
                          porch_dog, t) for t in (1, 2)}
    latency = interleaved_latency({f"{k} {v}": tmp / k / f"model_{v}.tflite" for k in ("one", "two")
                                   for v in ("float32", "int8")})
    return {"unknowns": unknowns, "known": known, "sweep": rows, "replays": replays, "enrolment": enrol,
            "identity": identity,
            "frame_cost": cost, "latency_1thread": latency, "convert_one": _variants(one),
            "convert_two": _variants(two), "openset_convert": two.get("openset"), "embedder": two.get("embedder")}


def _variants(report):
    return {v: {k: r[k] for k in ("bytes", "accuracy", "agreement", "latency_ms")} for v, r in report["variants"].items()}


if __name__ == "__main__":
    main()
