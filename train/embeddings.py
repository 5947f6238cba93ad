"""Frozen-backbone embeddings, computed once per image and view and cached on disk."""

import collections
import concurrent.futures
import dataclasses
import functools
import hashlib
import itertools
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


@dataclasses.dataclass(frozen=True)
class Todo:
    """One image with views missing from the cache: its index in the sample list, path, content hash, views."""

    index: int
    path: str
    digest: str
    views: tuple


def file_digest(path):
    """Reads a sample and checks its header; returns its content hash (the bytes are not kept).

    Raises:
      ImageError: a file that is no image within the pixel limit. The header is checked before the
        cache is asked: the pixel limit can change between runs, so its verdict is never cached.
    """
    data = read_bytes(path)
    check_header(data, str(path))
    return hashlib.sha256(data).hexdigest()


def decode_views(path, digest, views, spec):
    """Reads, checks and decodes one image into its views: {view: uint8 image}, or the reason it cannot.

    The bytes are hashed again: a file changed since the cache lookup would otherwise be cached under
    the old content's hash.
    """
    try:
        data = read_bytes(path)
    except ImageError as e:
        return e.reason
    if hashlib.sha256(data).hexdigest() != digest:
        return "changed while tl-train was reading it; run again"
    try:
        rgb = decode_image(data, str(path))
    except ImageError as e:
        return e.reason
    return {v: view_image(rgb, v, spec) for v in views}


def embed_samples(samples, views, extractor, spec, cache, batch_size=32, desc="embedding", workers=2, compute=None):
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
      compute: None to compute here, or a callable taking the Todo list and yielding
        (index, digest, view, vector) — view None and a reason string for an unreadable image —
        in any order (tl.train.cluster computes on a Ray cluster this way).
    """
    found, todo, skipped, hits = lookup(samples, views, cache)
    misses = sum(len(t.views) for t in todo)
    if todo:
        if compute is None:
            compute = functools.partial(compute_here, extractor=extractor, spec=spec, batch_size=batch_size,
                                        workers=workers)
        _store(compute(todo), samples, found, skipped, cache, desc, misses)
    kept = sorted(found)
    vectors = {v: np.stack([found[i][v] for i in kept]) if kept else np.zeros((0, 0), np.float32) for v in views}
    return Embedded(vectors=vectors, kept=kept, skipped=skipped, hits=hits, misses=misses)


def lookup(samples, views, cache):
    """Hashes every file and looks its views up: (found {index: {view: vector or None}}, Todo list, skipped, hits)."""
    found, todo, skipped, hits = {}, [], [], 0
    for i, s in enumerate(samples):
        try:
            digest = file_digest(s.path)
        except ImageError as e:
            skipped.append(Skipped(str(s.path), e.reason))
            continue
        bad = cache.get_bad(digest)
        if bad is not None:
            skipped.append(Skipped(str(s.path), bad))
            continue
        vecs = {v: cache.get(digest, v) for v in views}
        missing = tuple(v for v in views if vecs[v] is None)
        hits += len(views) - len(missing)
        found[i] = vecs
        if missing:
            todo.append(Todo(i, str(s.path), digest, missing))
    return found, todo, skipped, hits


def _store(results, samples, found, skipped, cache, desc, total):
    """Writes computed embeddings into the cache as they arrive."""
    with tqdm(total=total, desc=desc, unit="img", leave=False) as bar:
        for i, digest, view, value in results:
            if view is None:  # unreadable: remembered, so a warm run does not decode it again
                cache.put_bad(digest, value)
                skipped.append(Skipped(str(samples[i].path), value))
                bar.update(sum(v is None for v in found.pop(i).values()))
                continue
            cache.put(digest, view, value)
            found[i][view] = value
            bar.update(1)


def compute_here(todo, extractor, spec, batch_size=32, workers=2):
    """Embeds the Todo list on this machine, decoding ahead of the extractor in a thread pool.

    Yields (index, digest, view, vector), or (index, digest, None, reason) for an unreadable image.
    Decoding (OpenCV releases the GIL) overlaps with inference, and at most a few batches of
    decoded images are held at once, so memory stays flat on big folders.
    """
    batch, owners = [], []
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        decoded = _ahead(pool, lambda t: decode_views(t.path, t.digest, t.views, spec), todo, 2 * batch_size)
        for t, result in zip(todo, decoded):
            if isinstance(result, str):
                yield t.index, t.digest, None, result
                continue
            for view in t.views:
                batch.append(result[view])
                owners.append((t.index, t.digest, view))
                if len(batch) == batch_size:
                    yield from _run(extractor, batch, owners)
        if batch:
            yield from _run(extractor, batch, owners)


def _run(extractor, batch, owners):
    out = np.asarray(extractor(np.stack(batch)), dtype=np.float32)
    results = [(i, digest, view, vec) for (i, digest, view), vec in zip(owners, out)]
    batch.clear()
    owners.clear()
    return results


def _ahead(pool, fn, items, depth):
    """Maps fn over items in the pool, in order, keeping `depth` calls running ahead of the consumer."""
    items = iter(items)
    pending = collections.deque(pool.submit(fn, x) for x in itertools.islice(items, depth))
    while pending:
        result = pending.popleft().result()
        for x in itertools.islice(items, 1):
            pending.append(pool.submit(fn, x))
        yield result
