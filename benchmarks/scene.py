"""Writes replayable porch scenes: folders of 640×480 frames, and (for door scenes) their truth CSV.

Two kinds:

- the demo scene (`make demo`): the `--allow` class for 3 s, a 1 s gap, the `--other` class for 2 s, a 1 s
  gap, the allowed class again, pasted on a plain porch:

      python benchmarks/scene.py --data ../shared/data/pets/val --allow dog --other other --out runs/demo/scene

- a door scene (`--per-class N`): N visits of every class of a class-folder set, shuffled, one every
  `--period` seconds on a procedurally drawn porch (one of several backgrounds). Each visitor is a photo of
  its own (never reused in a scene), at its own size and place on the floor, walking in from one side and
  out of the other; sensor noise, a slow light drift and JPEG noise on every frame; `--night` renders what
  an infrared camera sees (monochrome, flat contrast, more sensor noise, soft focus). Writes the frames
  into OUT/frames/ and OUT/truth.csv (`start_s,end_s,label`: from the first frame that shows any of the
  visitor to just after the last), for `tl-device score`:

      python benchmarks/scene.py --data ../shared/data/shift --per-class 6 --night --out runs/scenes/shift-night
      tl-device score runs/scenes/shift-night/frames --truth runs/scenes/shift-night/truth.csv --model ... --allow dog
"""

import argparse
import csv
from pathlib import Path

import cv2
import numpy as np

from tl.device.data.dataset import scan_folder
from tl.device.model.image import load_image

W, H = 640, 480
# (class role, seconds) in order; None is an empty porch.
TIMELINE = (("allow", 3.0), (None, 1.0), ("other", 2.0), (None, 1.0), ("allow", 2.0))
# Door scenes: empty porch before the first visitor (a motion gate learns the background meanwhile).
LEAD_SECONDS = 2.0
# A visit: walk in from a side, stand, walk out of the other side.
WALK_SECONDS, VISIT_SECONDS = 0.4, 2.5
BACKGROUNDS = ("siding", "brick", "plain", "door")


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
    """Writes the demo scene's frames as out/frame_00000.jpg…; returns how many."""
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


def backdrop(rng, kind):
    """A porch without visitors (BGR float32): a wall above a floor, with a mat and a pot, drawn by `kind`."""
    horizon = int(H * rng.uniform(0.5, 0.65))
    wall = rng.uniform(60, 200, 3)
    floor = rng.uniform(50, 150, 3)
    img = np.empty((H, W, 3), np.float32)
    img[:horizon] = wall
    img[horizon:] = floor * np.linspace(0.8, 1.15, H - horizon, dtype=np.float32)[:, None, None]
    if kind == "siding":
        for y in range(0, horizon, int(rng.integers(14, 26))):
            img[y : y + 2, :] *= 0.75
    elif kind == "brick":
        step = int(rng.integers(16, 24))
        for row, y in enumerate(range(0, horizon, step)):
            img[y : y + 2, :] *= 0.7
            for x in range((row % 2) * step, W, 2 * step):
                img[y : y + step, x : x + 2] *= 0.7
    elif kind == "door":
        x0 = int(rng.integers(W // 4, W // 2))
        img[int(horizon * 0.1) : horizon, x0 : x0 + W // 4] = rng.uniform(40, 120, 3)
    for x in range(0, W, int(rng.integers(30, 60))):  # floor planks
        img[horizon:, x : x + 2] *= 0.8
    mx, mw = int(rng.integers(0, W // 2)), int(rng.integers(W // 4, W // 2))
    img[int(H * 0.85) : int(H * 0.95), mx : mx + mw] = rng.uniform(30, 160, 3)  # door mat
    px = int(rng.choice([rng.integers(10, 80), rng.integers(W - 120, W - 50)]))
    cv2.rectangle(img, (px, horizon - 60), (px + 50, horizon + 20), tuple(rng.uniform(40, 160, 3).tolist()), -1)
    cv2.circle(img, (px + 25, horizon - 80), 40, tuple(rng.uniform(20, 120, 3).tolist()), -1)  # a plant
    return img + rng.normal(0, 4, img.shape).astype(np.float32)  # the paint's own texture


def place(rgb, rng):
    """A visitor's photo (BGR float32) scaled to its size in the scene, and where it stands: (photo, x, y, side)."""
    h = int(H * rng.uniform(0.45, 0.85))
    w = min(W - 20, max(8, int(rgb.shape[1] * h / rgb.shape[0])))
    photo = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)[:, :, ::-1].astype(np.float32)
    # Standing within the square the model sees of a 4:3 frame (its centre crop), as at a door with a ROI on it.
    side = (W - H) // 2
    x = int(rng.integers(side, W - side - w + 1)) if w <= H else (W - w) // 2
    y = int(rng.integers(max(0, H - h - 40), H - h + 1))
    return photo, x, y, int(rng.choice([-1, 1]))


def blend(frame, photo, x, y):
    """Pastes `photo` with its left edge at `x` (it may hang off either side) with a soft 4-px edge."""
    h, w = photo.shape[:2]
    left, right = max(0, x), min(W, x + w)
    if right <= left:
        return False
    alpha = np.ones((h, w, 1), np.float32)
    ramp = np.linspace(0.25, 1.0, 4, dtype=np.float32)
    alpha[:, :4, 0] *= ramp
    alpha[:, -4:, 0] *= ramp[::-1]
    alpha[:4] *= ramp[:, None, None]
    alpha[-4:] *= ramp[::-1, None, None]
    part, a = photo[:, left - x : right - x], alpha[:, left - x : right - x]
    region = frame[y : y + h, left:right]
    frame[y : y + h, left:right] = region * (1 - a) + part * a
    return True


def visitor_x(t, x, w, side):
    """Left edge of a visitor `t` seconds into its visit: walking in from `side` (-1 left, 1 right), out the other."""
    off_in = -w if side < 0 else W
    off_out = W if side < 0 else -w
    if t < WALK_SECONDS:
        return int(off_in + (x - off_in) * t / WALK_SECONDS)
    if t > VISIT_SECONDS - WALK_SECONDS:
        return int(x + (off_out - x) * (t - VISIT_SECONDS + WALK_SECONDS) / WALK_SECONDS)
    return x


def night(frame, rng):
    """What an infrared night camera makes of a frame: monochrome, flat contrast, sensor noise, soft focus."""
    grey = cv2.cvtColor(np.clip(frame, 0, 255).astype(np.uint8), cv2.COLOR_BGR2GRAY).astype(np.float32)
    grey = 85 + 0.45 * (grey - 128) + rng.normal(0, 9, grey.shape).astype(np.float32)
    grey = cv2.GaussianBlur(grey, (3, 3), 0)
    return np.repeat(grey[:, :, None], 3, axis=2)


def photos_by_class(data, classes=None):
    """{class: [paths]} of a class-folder set (every class, or `classes`)."""
    ds = scan_folder(data)
    wanted = classes or ds.classes
    missing = [c for c in wanted if c not in ds.classes]
    if missing:
        raise SystemExit(f"{data} has no class {', '.join(missing)} (its classes: {', '.join(ds.classes)})")
    return {c: [s.path for s in ds.samples if s.label == ds.classes.index(c)] for c in wanted}


def plan_visits(photos, per_class, rng):
    """A shuffled list of (label, path): `per_class` distinct photos of each class (fewer if it has fewer)."""
    visits = []
    for label, paths in photos.items():
        chosen = rng.permutation(len(paths))[:per_class]
        visits += [(label, paths[i]) for i in chosen]
    return [visits[i] for i in rng.permutation(len(visits))]


def build_door_scene(data, out, per_class=6, classes=None, fps=10.0, period=5.0, night_ir=False, seed=0,
                     background=None):
    """Writes a door scene into `out` (frames/ and truth.csv); returns {frames, visits, background, night}."""
    rng = np.random.default_rng(seed)
    out = Path(out)
    (out / "frames").mkdir(parents=True, exist_ok=True)
    kind = background or BACKGROUNDS[seed % len(BACKGROUNDS)]
    base = backdrop(rng, kind)
    visits = []
    for label, path in plan_visits(photos_by_class(data, classes), per_class, rng):
        try:
            visits.append((label, place(load_image(path), rng)))
        except ValueError:
            continue  # an unreadable photo: the scene goes on without it
    n = int(round((LEAD_SECONDS + period * len(visits)) * fps))
    seen = {}
    for i in range(n):
        t = i / fps
        frame = base * (1.0 + 0.1 * np.sin(2 * np.pi * t / 60.0))  # the light drifts over a minute
        k, into = int((t - LEAD_SECONDS) // period), (t - LEAD_SECONDS) % period
        if t >= LEAD_SECONDS and into < VISIT_SECONDS:
            label, (photo, x, y, side) = visits[k]
            if blend(frame, photo, visitor_x(into, x, photo.shape[1], side), y):
                seen.setdefault(k, [i, i])[1] = i
        frame = night(frame, rng) if night_ir else frame + rng.normal(0, 5, frame.shape).astype(np.float32)
        quality = int(rng.integers(60, 91))
        cv2.imwrite(str(out / "frames" / f"frame_{i:05d}.jpg"), np.clip(frame, 0, 255).astype(np.uint8),
                    [cv2.IMWRITE_JPEG_QUALITY, quality])
    with open(out / "truth.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["start_s", "end_s", "label"])
        for k, (first, last) in sorted(seen.items()):
            writer.writerow([f"{first / fps:.2f}", f"{(last + 1) / fps:.2f}", visits[k][0]])
    return {"frames": n, "visits": len(seen), "background": kind, "night": night_ir}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="class-per-folder images to take the visitors from")
    ap.add_argument("--out", required=True, help="folder to write the frames into (door scene: frames/ and truth.csv)")
    ap.add_argument("--allow", default="dog", help="demo scene: the class that should open the door (default: dog)")
    ap.add_argument("--other", default="other", help="demo scene: a class that should be denied (default: other)")
    ap.add_argument("--per-class", type=int, help="door scene: visits of each class (each a photo of its own)")
    ap.add_argument("--classes", nargs="+", help="door scene: the classes that visit (default: every class)")
    ap.add_argument("--period", type=float, default=5.0, help="door scene: seconds from one visit to the next")
    ap.add_argument("--fps", type=float, default=10.0, help="frames per second")
    ap.add_argument("--night", action="store_true", help="door scene: render as an infrared night camera")
    ap.add_argument("--background", choices=BACKGROUNDS, help="door scene: the porch (default: by --seed)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if a.per_class is None:
        n = write_scene(a.data, a.allow, a.other, a.out, fps=a.fps, seed=a.seed)
        print(f"wrote {n} frames ({a.fps:g} fps) to {a.out}")
        return
    info = build_door_scene(a.data, a.out, a.per_class, a.classes, a.fps, a.period, a.night, a.seed, a.background)
    print(f"wrote {info['frames']} frames ({a.fps:g} fps), {info['visits']} visits, {info['background']} porch"
          f"{', night' if info['night'] else ''}, to {a.out} (truth: {Path(a.out) / 'truth.csv'})")


if __name__ == "__main__":
    main()
