"""Motion gating: how many invokes an empty porch saves, and whether the dog is still let in as fast.

Replays through `tl.device.door.loop.run_door` (Coral's int8 MobileNetV2 from ../shared/data; dog
breeds open, cats are denied), each scene once with `motion = false` and once with `motion = true`:

- an empty porch for 60 s at 10 fps: fresh sensor noise in every frame and the light drifting by
  15 % (a cloud), JPEG-compressed like a camera stream; counts model invokes and loop CPU time;
- six dog arrivals, each after a different stretch of empty porch (so the arrival falls at every
  phase of the 2 s heartbeat): the dog walks in from the left over 1 s and waits at the door;
  compares the time from the first frame showing the dog to door_open;
- the gate's background models (running average, selective update, OpenCV MOG2 and KNN) on door scenes
  from `scene.py` (shift/ photos, a visit every 5 s, day and IR night) and on a dog standing still for 60 s:
  how much of the empty porch each calls motion (ghosts of visitors that left), how many visitor frames,
  how long a still visitor stays motion, and its cost per frame.

    python benchmarks/motion.py        # writes benchmarks/motion.json and motion.md
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import scene
from soak import CORAL_LABELS, CORAL_MODEL, PHOTOS

from tl.device.model.image import load_image

FPS = 10.0
ROI = "80,0,480,480"


def porch(rng, light):
    """An empty porch frame (BGR) with sensor noise, at `light` times the base brightness."""
    ramp = np.linspace(0.8, 1.2, 480, dtype=np.float32)[:, None, None]
    frame = np.array([90, 110, 120], np.float32) * ramp * light + rng.normal(0, 6, (480, 640, 3))
    return np.clip(frame, 0, 255).astype(np.uint8)


def paste(frame, photo, x, y=60):
    """Pastes `photo` with its left edge at `x` (it may hang off the frame's left side)."""
    h, w = photo.shape[:2]
    left = max(0, x)
    frame[y : y + h, left : x + w] = photo[:, left - x :]
    return frame


def write_scene(folder, empty_seconds, dog_seconds=3.0, seed=0, drift=0.15):
    """Writes the frames of one scene; returns the index of the first frame showing the dog (or None)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    dog = cv2.resize(load_image(PHOTOS["allow"], bgr=True), (360, 360))
    n_empty, n_dog = round(empty_seconds * FPS), round(dog_seconds * FPS)
    walk = 10  # frames to walk from outside the frame to the door
    for i in range(n_empty + n_dog):
        light = 1.0 + drift * np.sin(np.pi * i / max(1, n_empty + n_dog))
        frame = porch(rng, light)
        if i >= n_empty:
            step = min(i - n_empty + 1, walk)
            paste(frame, dog, int(-360 + (140 + 360) * step / walk))
        cv2.imwrite(str(folder / f"frame_{i:05d}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return n_empty if n_dog else None


def run(folder, motion, events):
    """Runs the daemon on a scene; returns (RunStats, events, loop CPU seconds)."""
    from tl.device.door import config
    from tl.device.door.events import read_events
    from tl.device.door.loop import run_door

    labels = CORAL_LABELS.read_text().splitlines()
    cfg = config.load_config(None, {
        "model": str(CORAL_MODEL), "labels": str(CORAL_LABELS), "source": str(folder), "fps": FPS, "realtime": False,
        "roi": ROI, "allow": labels[152:270], "deny": labels[281:286], "threshold": 0.25, "door": "none",
        "threads": 2, "events": str(events), "status_seconds": 3600.0, "motion": motion})
    cpu = time.process_time()
    stats = run_door(cfg)
    return stats, read_events(events), time.process_time() - cpu


def measure(work, arrivals):
    """Runs every scene with and without gating; returns the result dict."""
    empty = work / "empty"
    write_scene(empty, 60.0, dog_seconds=0.0, seed=1)
    static = {}
    for motion in (False, True):
        stats, _, cpu = run(empty, motion, work / f"empty-{motion}.jsonl")
        static[motion] = {"frames": stats.frames, "invokes": stats.classified, "cpu_s": round(cpu, 2)}
    saved = 1 - static[True]["invokes"] / static[False]["invokes"]
    visits = []
    for n, seconds in enumerate(arrivals):
        folder = work / f"visit{n}"
        first = write_scene(folder, seconds, seed=10 + n)
        row = {"empty_s": seconds, "first_dog_frame": first}
        for motion in (False, True):
            stats, events, _ = run(folder, motion, work / f"visit{n}-{motion}.jsonl")
            opened = [e for e in events if e["event"] == "door_open"]
            key = "gated" if motion else "plain"
            row[f"{key}_open_after_s"] = round(opened[0]["ts"] - first / FPS, 2) if opened else None
            row[f"{key}_invokes"] = stats.classified
        visits.append(row)
    return {
        "model": CORAL_MODEL.name, "fps": FPS,
        "static_porch": {"seconds": 60.0, "plain": static[False], "gated": static[True],
                         "invokes_saved": round(saved, 4)},
        "arrivals": visits,
        "same_open_time": all(v["plain_open_after_s"] == v["gated_open_after_s"] for v in visits),
        "max_open_after_s": max((v["gated_open_after_s"] or 99) for v in visits),
    }


def compare_backgrounds(work):
    """Each background model's motion flags on door scenes and on a still dog; returns rows."""
    from tl.device.door.motion import BACKGROUNDS
    from tl.device.door.score import read_truth

    shift = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "shift"
    scenes = {"shift day": work / "day", "shift night": work / "night"}
    scene.build_door_scene(shift, scenes["shift day"], per_class=6, seed=3)
    scene.build_door_scene(shift, scenes["shift night"], per_class=6, night_ir=True, seed=4)
    still = work / "still"
    write_scene(still, 5.0, dog_seconds=60.0, seed=7)
    rows = []
    for background in BACKGROUNDS:
        row = {"background": background}
        for name, folder in scenes.items():
            visits = read_truth(folder / "truth.csv")
            flags, ms = _flags(sorted((folder / "frames").iterdir()), background)
            inside = [any(v.start_s <= i / FPS < v.end_s for v in visits) for i in range(len(flags))]
            empty = [f for f, i in zip(flags, inside) if not i]
            row[name] = {"empty_porch_moving": round(sum(empty) / len(empty), 3),
                         "visit_frames_moving": round(sum(f for f, i in zip(flags, inside) if i) / sum(inside), 3),
                         "ms_per_frame": round(ms, 2)}
        flags, _ = _flags(sorted(still.iterdir()), background)
        dog = flags[50:]
        row["still_dog_moving_s"] = round((dog.index(False) if False in dog else len(dog)) / FPS, 1)
        rows.append(row)
    return rows


def _flags(paths, background):
    from tl.device.door.motion import MotionGate

    gate = MotionGate(background=background, heartbeat_seconds=3600.0)
    flags, spent = [], 0.0
    for i, path in enumerate(paths):
        image = cv2.imread(str(path))
        started = time.perf_counter()
        flags.append(gate.check(image, i / FPS).changed >= gate.area)
        spent += time.perf_counter() - started
    return flags, 1000 * spent / len(paths)


def markdown(result):
    """The result as Markdown."""
    s = result["static_porch"]
    lines = [
        f"# Motion gating ({result['model']}, {result['fps']:g} fps replay)", "",
        f"Empty porch, {s['seconds']:g} s (sensor noise, 15 % light drift, JPEG): "
        f"**{s['plain']['invokes']} → {s['gated']['invokes']} invokes ({s['invokes_saved']:.1%} fewer)**, "
        f"loop CPU {s['plain']['cpu_s']} s → {s['gated']['cpu_s']} s (JPEG decoding stays).", "",
        "| empty before the dog (s) | door_open after first dog frame, no gating (s) | with gating (s) "
        "| invokes, no gating | with gating |",
        "| --- | --- | --- | --- | --- |",
    ]
    for v in result["arrivals"]:
        lines.append(f"| {v['empty_s']} | {v['plain_open_after_s']} | {v['gated_open_after_s']} | "
                     f"{v['plain_invokes']} | {v['gated_invokes']} |")
    lines += ["", f"Same door_open time with and without gating: **{'yes' if result['same_open_time'] else 'NO'}**; "
              f"slowest {result['max_open_after_s']} s after the dog's first frame.", "",
              "## Background models (gate only, no model)", "",
              "Door scenes from shift/ (a 2.5 s visit every 5 s), frames the gate calls motion; a dog that walks in "
              "and stands still for 60 s: how long it stays motion (then the 2 s heartbeat looks).", "",
              "| background | empty porch moving, day | night | visitor frames moving, day | night | ms/frame "
              "| still dog moving (s) |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in result["backgrounds"]:
        d, n = r["shift day"], r["shift night"]
        lines.append(f"| {r['background']} | {d['empty_porch_moving']:.0%} | {n['empty_porch_moving']:.0%} | "
                     f"{d['visit_frames_moving']:.0%} | {n['visit_frames_moving']:.0%} | {d['ms_per_frame']} | "
                     f"{r['still_dog_moving_s']} |")
    return "\n".join(lines) + "\n"


def main():
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arrivals", type=float, nargs="+", default=[3.0, 3.3, 3.6, 4.1, 4.5, 4.8])
    parser.add_argument("--json", type=Path, default=here / "motion.json")
    parser.add_argument("--markdown", type=Path, default=here / "motion.md")
    args = parser.parse_args()
    if not CORAL_MODEL.is_file():
        raise SystemExit(f"{CORAL_MODEL} not found: this benchmark uses the shared Coral model and photos")
    with tempfile.TemporaryDirectory(prefix="tl-motion-") as tmp:
        result = measure(Path(tmp), args.arrivals)
        result["backgrounds"] = compare_backgrounds(Path(tmp))
    print(json.dumps(result, indent=2))
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    args.markdown.write_text(markdown(result))


if __name__ == "__main__":
    main()
