"""tl-device end to end on a replay, and the per-frame budget: each stage per frame, and the share outside invoke.

Writes N 640x480 JPEG porch frames (a dog photo pasted in for a stretch, when the Coral test photos
are there), then:

1. runs `tl.device.door.loop.run_door` on them in a fresh process, --no-realtime, exactly as
   `tl-device run --source FOLDER` would (frames/s, memory, time to first decision, door latency),
   once as shipped and once with the source's model feed switched off (the full-size path): the
   decisions must be the same;
2. times each stage of a frame (read, decode, preprocess, input, invoke, output, open-set, policy,
   events) for four frame paths, interleaved frame by frame so a busy machine hits all alike:
   `full` (the path before: full decode, BGR→RGB of the whole frame, resize, float quantization),
   `replay` (today's folder path: reduced JPEG decode straight to the model's size, table lookup),
   and the fake picamera2 serving the model's size (`picamera_yuv420`: a Pi 4's lores stream,
   `picamera_rgb`: a Pi 5's).

    python benchmarks/device_replay.py                       # Google's int8 MobileNetV2 224
    python benchmarks/device_replay.py --model RUN_DIR/model_int8.tflite --allow dog
"""

import argparse
import json
import resource
import statistics
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
ROI = "80,0,480,480"
PATHS = ("full", "replay", "picamera_yuv420", "picamera_rgb")


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
    from tl.device.door import config, loop
    from tl.device.door.events import read_events

    if not spec.get("feed", True):  # the path before: the source hands over full-size frames only
        real = loop.open_source
        loop.open_source = lambda *a, **k: real(*a, **{**k, "spec": None})
    cfg = config.load_config(None, spec["options"])
    stats = loop.run_door(cfg)
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
        "decisions": [[e["event"], e["frame"], e["label"]] for e in events if e["event"] not in ("start", "stop")],
    }))


class Pipeline:
    """The loop's parts, built from the same config as the daemon, with each stage of a frame timed."""

    def __init__(self, options, events_path):
        from tl.device.door import config
        from tl.device.door.events import EventLog
        from tl.device.door.policy import DoorPolicy
        from tl.device.model.classifier import Classifier
        from tl.device.recognition.recognizer import make_recognizer

        self.cfg = config.load_config(None, options)
        self.clf = Classifier(self.cfg.model, self.cfg.labels, threads=self.cfg.threads)
        self.clf.warm_up()
        self.policy = DoorPolicy(config.policy_config(self.cfg, self.clf.labels, self.clf.info.operating_points))
        self.recognizer = make_recognizer(self.clf, self.cfg.openset, self.cfg.openset_quantile, self.cfg.gallery,
                                          self.cfg.require_identity, self.cfg.identity_threshold)
        self.events = EventLog(events_path).__enter__()
        self.detail = self.clf.interpreter.get_input_details()[0]

    def model_stages(self, pixels, ts, index, t, quantize=None):
        """Input, invoke, output, open-set, policy, events for prepared pixels; appends to `t`."""
        from tl.device.model import contract
        from tl.device.model.outputs import read_output

        interp, clf = self.clf.interpreter, self.clf
        t0 = time.perf_counter()
        if quantize:  # the path before: float scale and quantize of every pixel
            x = contract.quantize_input(contract.scale_pixels(pixels, clf.spec.pixel_range), self.detail)
            interp.set_tensor(self.detail["index"], x)
        else:
            contract.set_input(interp, pixels, clf.spec.pixel_range)
        t1 = time.perf_counter()
        interp.invoke()
        t2 = time.perf_counter()
        scores = read_output(interp, clf.outputs.scores)
        t3 = time.perf_counter()
        verdict = self.recognizer.judge(scores, clf, ts, index)
        t4 = time.perf_counter()
        decisions = list(self.policy.update(ts, scores, verdict))
        t5 = time.perf_counter()
        for d in decisions:
            self.events.write(d.event, ts, index, d.label, d.score, d.reason)
        t6 = time.perf_counter()
        for key, a, b in (("input", t0, t1), ("invoke", t1, t2), ("output", t2, t3), ("open_set", t3, t4),
                          ("policy", t4, t5), ("events", t5, t6)):
            t[key].append(b - a)


def stage_times(options, folder, tmp, limit):
    """{path: {stage: median ms per frame}} over the first `limit` frames, the paths interleaved."""
    from tl.device.hw.cameras import PiCamera
    from tl.device.hw.fakes import FakePicamera2Factory
    from tl.device.hw.feed import ModelFeed, decode_reduced
    from tl.device.model import contract

    files = sorted(folder.iterdir())[:limit]
    pipes = {p: Pipeline(options, tmp / f"events_{p}.jsonl") for p in PATHS}
    spec, roi = pipes["full"].clf.spec, tuple(int(v) for v in ROI.split(","))
    feed = ModelFeed(spec, roi)
    scene = [cv2.imread(str(f)) for f in files]
    cams = {}
    for name, formats in (("picamera_yuv420", ("YUV420",)), ("picamera_rgb", ("BGR888", "YUV420"))):
        cams[name] = PiCamera(FPS, (640, 480), feed, factory=FakePicamera2Factory(scene=scene, lores_formats=formats))
        cams[name].open()
        for _ in range(len(scene)):  # the ISP's work (rendering each stream) is done before timing
            cams[name].grab(time.time)
    times = {p: {k: [] for k in ("read", "decode", "preprocess", "input", "invoke", "output", "open_set",
                                 "policy", "events")} for p in PATHS}
    for i, path in enumerate(files):
        ts = i / FPS
        for name in PATHS:
            t = times[name]
            t0 = time.perf_counter()
            if name in cams:
                cams[name].grab(time.time)
                t1 = time.perf_counter()
                capture = cams[name].retrieve()  # copy the lores buffer out, YUV→RGB if it is YUV, crop/fit
                t2 = t3 = time.perf_counter()
                pixels = capture.pixels
            else:
                data = np.fromfile(path, np.uint8)
                t1 = time.perf_counter()
                if name == "full":
                    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
                    t2 = time.perf_counter()
                    rgb = cv2.cvtColor(contract.crop_roi(bgr, roi), cv2.COLOR_BGR2RGB)
                    pixels = contract.prepare_image(rgb, spec)
                else:
                    factor = feed.jpeg_factor(data)
                    small = decode_reduced(data, factor)
                    t2 = time.perf_counter()
                    pixels = feed.from_reduced(small, factor)
                t3 = time.perf_counter()
            pipes[name].model_stages(pixels, ts, i, t, quantize=name == "full")
            for key, a, b in (("read", t0, t1), ("decode", t1, t2), ("preprocess", t2, t3)):
                t[key].append(b - a)
    for cam in cams.values():
        cam.close()
    result = {}
    for name, t in times.items():
        ms = {k: round(statistics.median(v) * 1000, 3) for k, v in t.items()}
        outside = sum(v for k, v in ms.items() if k != "invoke")
        result[name] = {"stage_ms": ms, "outside_invoke_ms": round(outside, 3),
                        "outside_over_invoke": round(outside / ms["invoke"], 2)}
    return result


def run_child(options, feed):
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps({"options": options, "feed": feed})],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--labels", type=Path, help="labels file (default: ImageNet's for the default model)")
    parser.add_argument("--allow", action="append", help="allowed class (default: ImageNet's dog breeds)")
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--stage-frames", type=int, default=200, help="frames timed per stage path")
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
                   "deny": [], "roi": ROI, "threshold": 0.25, "door": "none",
                   "events": str(tmp / "events.jsonl"), "status_seconds": 3600.0}
        started = time.time()
        result = run_child(options, feed=True)
        result["start_to_first_decision_s"] = round(result.pop("first_decision_wall") - started, 3)
        opened = result.pop("door_open_ts")
        result["door_open_after_first_dog_s"] = None if opened is None else round(opened - dog_from / FPS, 3)
        before = run_child({**options, "events": str(tmp / "events_before.jsonl")}, feed=False)
        result["full_path_frames_per_second"] = before["frames_per_second"]
        result["same_decisions_as_full_path"] = before["decisions"] == result["decisions"]
        result["stages"] = stage_times(options, tmp / "frames", tmp, args.stage_frames)
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
