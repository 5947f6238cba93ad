"""Frozen-backbone embeddings, computed once per image and view and cached on disk."""

import concurrent.futures
import dataclasses
import hashlib
import logging
import os
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from tl.device.data import atomic
from tl.device.data.dataset import Skipped
from tl.device.errors import ConfigError, ImageError
from tl.device.model.contract import prepare_image
from tl.device.model.image import check_header, decode_image, read_bytes

log = logging.getLogger(__name__)

VIEWS = ("orig", "flip", "crop", "ir", "small")
CROP_FRACTION = 0.8  # the "crop" view zooms in on the central 80 % (a mild scale augmentation)
# Door-camera views: "ir" is the night camera (monochrome, flat contrast, sensor noise, soft focus);
# "small" is a subject farther away, off-centre, in a blurred context made of its own surroundings.
IR_CONTRAST, IR_NOISE = 0.55, 8.0
SMALL_SCALE = 0.55


def default_cache_dir():
    """$XDG_CACHE_HOME/tl-edge, or ~/.cache/tl-edge."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tl-edge"


def parse_views(text):
    """Parses "flip,crop" into ("orig", "flip", "crop"); "orig" is always first."""
    views = ["orig"]
    for v in (t.strip() for t in (text or "").split(",")):
        if not v or v in views or v == "none":
            continue
        if v not in VIEWS:
            raise ConfigError(f"augmentation view {v!r} is unknown; use a comma list of {', '.join(VIEWS[1:])} or none")
        views.append(v)
    return tuple(views)


def view_image(rgb, view, spec):
    """Makes one augmented view of a decoded RGB image, as a model input (spec.height×spec.width uint8)."""
    if view == "crop":
        h, w = rgb.shape[:2]
        ch, cw = max(1, round(h * CROP_FRACTION)), max(1, round(w * CROP_FRACTION))
        y0, x0 = (h - ch) // 2, (w - cw) // 2
        rgb = rgb[y0 : y0 + ch, x0 : x0 + cw]
    img = prepare_image(rgb, spec)
    if view == "flip":
        img = np.ascontiguousarray(img[:, ::-1])
    elif view == "ir":
        img = infrared_view(img)
    elif view == "small":
        img = small_view(img)
    return img


def infrared_view(img):
    """A night-camera rendering: luma only, contrast flattened toward the mean, blurred, with fixed sensor noise."""
    import cv2

    gray = img.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    gray = cv2.GaussianBlur(gray, (3, 3), 0)
    gray = gray.mean() + IR_CONTRAST * (gray - gray.mean()) + 20.0
    # Fixed seed: the same view every time, so the cached embedding stays valid.
    gray += np.random.default_rng(0).normal(0.0, IR_NOISE, gray.shape).astype(np.float32)
    return np.repeat(np.clip(gray, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def small_view(img):
    """The subject shrunk to SMALL_SCALE and placed low and off-centre on a blurred, darker copy of the frame."""
    import cv2

    h, w = img.shape[:2]
    sh, sw = max(1, round(h * SMALL_SCALE)), max(1, round(w * SMALL_SCALE))
    k = 2 * (max(h, w) // 16) + 1
    out = (cv2.GaussianBlur(img, (k, k), 0).astype(np.float32) * 0.8).astype(np.uint8)
    y0, x0 = h - sh - h // 20, (w - sw) // 6
    out[y0 : y0 + sh, x0 : x0 + sw] = cv2.resize(img, (sw, sh), interpolation=cv2.INTER_AREA)
    return out


class EmbeddingCache:
    """Embeddings on disk: ROOT/embeddings/<backbone key>/<sha[:2]>/<sha>.<view>.npy.

    Files that failed to decode are remembered too (ROOT/unreadable/<sha>.txt holds the reason),
    so a warm run reports them without decoding again. Writes are atomic, so concurrent or
    interrupted runs never leave a half-written entry. A cache that cannot be written (read-only,
    disk full) is still read; new entries are then not kept, with one warning.

    Attributes:
      writable: False once a write failed or `check_writable` found the folder read-only.
      problem: why it is not writable (None while it is).
    """

    def __init__(self, root, key):
        self.root = Path(root)
        self.dir = self.root / "embeddings" / key
        self.bad_dir = self.root / "unreadable"
        self.writable = True
        self.problem = None

    def check_writable(self):
        """Proves an entry can be written; else marks the cache read-only. Returns `writable`."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            with atomic.atomic_path(self.dir / "probe"):
                pass
            (self.dir / "probe").unlink()
        except OSError as e:
            self._give_up(e)
        return self.writable

    def _give_up(self, err):
        self.writable = False
        self.problem = f"embedding cache {self.root} is not writable ({getattr(err, 'strerror', None) or err})"
        log.warning("%s; embeddings are computed without being kept (--cache-dir DIR chooses another)", self.problem)

    def _path(self, digest, view):
        return self.dir / digest[:2] / f"{digest}.{view}.npy"

    def get(self, digest, view):
        path = self._path(digest, view)
        try:
            return np.load(path)
        except (OSError, ValueError):
            return None  # missing or damaged: recompute

    def put(self, digest, view, vector):
        if not self.writable:
            return
        path = self._path(digest, view)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic.atomic_path(path) as tmp:
                np.save(tmp, vector.astype(np.float32), allow_pickle=False)
        except OSError as e:  # OutputError included: full or read-only disk; training goes on without
            self._give_up(e)

    def get_bad(self, digest):
        try:
            return (self.bad_dir / f"{digest}.txt").read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None

    def put_bad(self, digest, reason):
        if not self.writable:
            return
        try:
            self.bad_dir.mkdir(parents=True, exist_ok=True)
            atomic.write_text(self.bad_dir / f"{digest}.txt", reason)
        except OSError as e:
            self._give_up(e)


@dataclasses.dataclass
class Embedded:
    """Result of embedding a list of samples.

    Attributes:
      vectors: {view: (n_ok, dim) float32}, rows in the order of `kept`.
      kept: indices (into the input list) of the samples that decoded.
      skipped: Skipped entries for those that did not.
      hits, misses: cache statistics, counted per (image, view).
    """

    vectors: dict
    kept: list
    skipped: list
    hits: int = 0
    misses: int = 0


def _digest(path):
    """Reads a sample and checks its header; returns (bytes, content hash). Raises ImageError."""
    data = read_bytes(path)
    # Before the cache: the pixel limit can change between runs, so its verdict is never cached.
    check_header(data, str(path))
    return data, hashlib.sha256(data).hexdigest()


def _decode_views(path, data, views, spec):
    try:
        rgb = decode_image(data, str(path))
    except ImageError as e:
        return e.reason
    return {v: view_image(rgb, v, spec) for v in views}


def embed_samples(samples, views, extractor, spec, cache, batch_size=32, desc="embedding", workers=2):
    """Returns the embeddings of every sample and view, from the cache or computed now.

    Args:
      samples: tl.device.data.dataset.Sample list.
      views: view names (see VIEWS).
      extractor: callable mapping a uint8 (N, H, W, 3) batch to (N, dim) float32 embeddings.
      spec: the InputSpec (size and resize rule) images are prepared with.
      cache: an EmbeddingCache.
      batch_size: images per extractor call.
      desc: progress bar label.
      workers: decoding threads (OpenCV releases the GIL while decoding and resizing).
    """
    found, todo, skipped = {}, [], []
    hits = 0
    for i, s in enumerate(samples):
        try:
            data, digest = _digest(s.path)
        except ImageError as e:
            skipped.append(Skipped(str(s.path), e.reason))
            continue
        bad = cache.get_bad(digest)
        if bad is not None:
            skipped.append(Skipped(str(s.path), bad))
            continue
        vecs = {v: cache.get(digest, v) for v in views}
        missing = [v for v in views if vecs[v] is None]
        hits += len(views) - len(missing)
        found[i] = vecs
        if missing:
            todo.append((i, digest, data, missing))

    misses = sum(len(t[3]) for t in todo)
    if todo:
        _compute(samples, todo, found, skipped, extractor, spec, cache, batch_size, desc, workers, misses)
    kept = sorted(found)
    vectors = {v: np.stack([found[i][v] for i in kept]) if kept else np.zeros((0, 0), np.float32) for v in views}
    return Embedded(vectors=vectors, kept=kept, skipped=skipped, hits=hits, misses=misses)


def _compute(samples, todo, found, skipped, extractor, spec, cache, batch_size, desc, workers, total):
    batch, owners = [], []

    def flush():
        out = np.asarray(extractor(np.stack(batch)), dtype=np.float32)
        for (i, digest, view), vec in zip(owners, out):
            cache.put(digest, view, vec)
            found[i][view] = vec
        bar.update(len(batch))
        batch.clear()
        owners.clear()

    with tqdm(total=total, desc=desc, unit="img", leave=False) as bar, concurrent.futures.ThreadPoolExecutor(workers) as pool:
        # Decode a bounded chunk ahead of the extractor, so memory stays flat on big folders.
        chunk = 8 * batch_size
        decoded = (
            r
            for k in range(0, len(todo), chunk)
            for r in pool.map(lambda t: _decode_views(samples[t[0]].path, t[2], t[3], spec), todo[k : k + chunk])
        )
        for (i, digest, _data, missing), result in zip(todo, decoded):
            if isinstance(result, str):
                cache.put_bad(digest, result)
                skipped.append(Skipped(str(samples[i].path), result))
                del found[i]
                bar.update(len(missing))
                continue
            for view in missing:
                batch.append(result[view])
                owners.append((i, digest, view))
                if len(batch) == batch_size:
                    flush()
        if batch:
            flush()
