"""Writes a replayable porch scene: a folder of 640×480 frames where an allowed animal, then another class, visits.

    python benchmarks/scene.py --data ../shared/data/pets/val --allow dog --other other --out runs/demo/scene

Frames 0..N-1 at 10 fps: the `--allow` class for 3 s, a 1 s gap, the `--other` class for 2 s, a 1 s gap, then
the allowed class again. A gap shows the empty porch. Used by `make demo` to replay the door end to end.
"""

import argparse
from pathlib import Path

import cv2
import numpy as np

from tl.device.data.dataset import scan_folder
from tl.device.model.image import load_image

W, H = 640, 480
# (class role, seconds) in order; None is an empty porch.
TIMELINE = (("allow", 3.0), (None, 1.0), ("other", 2.0), (None, 1.0), ("allow", 2.0))


def porch(rng):
    """A plain, slightly noisy porch background (BGR)."""
    ramp = np.linspace(0.8, 1.2, H, dtype=np.float32)[:, None, None]
    frame = np.array([90, 110, 120], np.float32) * ramp + rng.normal(0, 6, (H, W, 3))
    return np.clip(frame, 0, 255).astype(np.uint8)


def paste(frame, rgb):
    """Pastes a photo, scaled to most of the frame height, in the middle of the frame."""
    h = int(H * 0.9)
    w = min(W, int(rgb.shape[1] * h / rgb.shape[0]))
    img = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)[:, :, ::-1]
    y, x = (H - h) // 2, (W - w) // 2
    frame[y : y + h, x : x + w] = img
    return frame


def first_image(data, name):
    ds = scan_folder(data)
    if name not in ds.classes:
        raise SystemExit(f"class {name!r} is not in {data} (classes: {', '.join(ds.classes)}); choose with --allow/--other")
    label = ds.classes.index(name)
    for s in ds.samples:
        if s.label == label:
            try:
                return load_image(s.path)
            except ValueError:
                continue
    raise SystemExit(f"no readable image of class {name!r} in {data}")


def write_scene(data, allow, other, out, fps=10.0, seed=0):
    """Writes the frames as out/frame_00000.jpg…; returns how many."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    photos = {"allow": first_image(data, allow), "other": first_image(data, other)}
    rng = np.random.default_rng(seed)
    i = 0
    for role, seconds in TIMELINE:
        for _ in range(int(seconds * fps)):
            frame = porch(rng)
            if role:
                frame = paste(frame, photos[role])
            cv2.imwrite(str(out / f"frame_{i:05d}.jpg"), frame)
            i += 1
    return i


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="class-per-folder images to take the visitors from")
    ap.add_argument("--allow", default="dog", help="the class that should open the door (default: dog)")
    ap.add_argument("--other", default="other", help="a class that should be denied (default: other)")
    ap.add_argument("--out", required=True, help="folder to write the frames into")
    a = ap.parse_args()
    n = write_scene(a.data, a.allow, a.other, a.out)
    print(f"wrote {n} frames (10 fps) to {a.out}")


if __name__ == "__main__":
    main()
