"""tl-device end to end on a replay: frames/s, resident memory, time to first decision, door latency.

Writes N 640x480 JPEG porch frames (a dog photo pasted in for a stretch, when the Coral test photos
are there), then runs `tl.device.door.loop.run_door` on them in a fresh process, --no-realtime,
exactly as `tl-device run --source FOLDER` would: read + decode + preprocess + invoke + policy +
events. Prints one JSON object (and writes it with --out).

    python benchmarks/device_replay.py                       # Google's int8 MobileNetV2 224
    python benchmarks/device_replay.py --model RUN_DIR/model_int8.tflite --allow dog
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from tl.device.model.image import load_image

REPO = Path(__file__).resolve().parents[1]
CORAL = REPO.parent / "shared" / "data" / "coral"
DEFAULT_MODEL = CORAL / "tf2_mobilenet_v2_1.0_224_ptq.tflite"
DEFAULT_LABELS = CORAL / "imagenet_labels.txt"
DOG_PHOTO = CORAL / "images" / "pets.jpg"
FPS = 10.0


def write_frames(folder, count, dog_from, dog_count, seed=0):
    """Writes count porch frames as JPEGs; frames [dog_from, dog_from + dog_count) show a dog."""
    rng = np.random.default_rng(seed)
    dog = cv2.resize(load_image(DOG_PHOTO, bgr=True), (400, 400)) if DOG_PHOTO.is_file() else None
    ramp = np.linspace(0.8, 1.2, 480, dtype=np.float32)[:, None, None]
    for i in range(count):
        frame = np.clip(np.array([90, 110, 120], np.float32) * ramp + rng.normal(0, 10, (480, 640, 3)), 0, 255)
        frame = frame.astype(np.uint8)
        if dog is not None and dog_from <= i < dog_from + dog_count:
            frame[40:440, 120:520] = dog
        cv2.imwrite(str(folder / f"frame_{i:05d}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, 90])


def child(spec):
    """Runs the daemon in this (fresh) process and prints its numbers as JSON."""
    from tl.device.door import config
    from tl.device.door.events import read_events
    from tl.device.door.loop import run_door

    cfg = config.load_config(None, spec["options"])
    stats = run_door(cfg)
    events = read_events(cfg.events)
    opened = [e for e in events if e["event"] == "door_open"]
    print(json.dumps({
        "frames": stats.frames,
        "loop_seconds": round(stats.seconds, 3),
        "frames_per_second": round(stats.fps, 1),
        "first_decision_wall": stats.first_decision,
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "door_open_ts": opened[0]["ts"] if opened else None,
        "events": stats.events,
    }))


def breakdown(model, labels, folder, threads, limit=100):
    """Mean milliseconds per stage over the first `limit` frames (in this process)."""
    from tl.device.model.classifier import Classifier
    from tl.device.model.contract import prepare_frame

    clf = Classifier(model, labels, threads=threads)
    clf.warm_up()
    times = {"read_decode": 0.0, "preprocess": 0.0, "invoke": 0.0}
    files = sorted(folder.iterdir())[:limit]
    for path in files:
        t0 = time.perf_counter()
        bgr = load_image(path, bgr=True)  # as the folder source decodes frames
        t1 = time.perf_counter()
        pixels = prepare_frame(bgr, clf.spec)
        t2 = time.perf_counter()
        clf.classify_pixels(pixels)
        times["read_decode"] += t1 - t0
        times["preprocess"] += t2 - t1
        times["invoke"] += clf.invoke_ms / 1000
    return {k: round(v / len(files) * 1000, 2) for k, v in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--labels", type=Path, help="labels file (default: ImageNet's for the default model)")
    parser.add_argument("--allow", action="append", help="allowed class (default: ImageNet's dog breeds)")
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(json.loads(args.child))
    labels = args.labels or (DEFAULT_LABELS if args.model == DEFAULT_MODEL else None)
    allow = args.allow
    if allow is None:
        from tl.device.model.metadata import read_labels

        allow = read_labels(DEFAULT_LABELS)[152:270]  # ImageNet's dog breeds
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "frames").mkdir()
        dog_from = args.frames // 2
        write_frames(tmp / "frames", args.frames, dog_from, 30)
        options = {"model": str(args.model), "labels": str(labels) if labels else None, "source": str(tmp / "frames"),
                   "fps": FPS, "realtime": False, "threads": args.threads, "allow": list(allow),
                   "deny": [], "roi": "80,0,480,480", "threshold": 0.25, "door": "none",
                   "events": str(tmp / "events.jsonl"), "status_seconds": 3600.0}
        started = time.time()
        out = subprocess.run([sys.executable, __file__, "--child", json.dumps({"options": options})],
                             capture_output=True, text=True, check=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        result["start_to_first_decision_s"] = round(result.pop("first_decision_wall") - started, 3)
        opened = result.pop("door_open_ts")
        result["door_open_after_first_dog_s"] = None if opened is None else round(opened - dog_from / FPS, 3)
        result["stage_ms"] = breakdown(args.model, labels, tmp / "frames", args.threads)
    from tl.device.data.sysinfo import machine_info
    from tl.device.model.runtime import runtime_version

    result = {"model": args.model.name, "threads": args.threads, "runtime": runtime_version(),
              "machine": machine_info(), **result}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
