"""Enrolment: a handful of photos (or a short video) of one pet -> a prototype in the gallery.

The idea of Coral's weight imprinting, without its special model: the mean of the photos' unit
embeddings is the identity's prototype, and the photos' leave-one-out similarities to it suggest
the threshold a frame must reach to count as that pet.
"""

import collections
import dataclasses
import time
from pathlib import Path

import numpy as np

from tl.device.errors import ConfigError, DataError, ImageError
from tl.device.recognition import gallery as gal
from tl.device.recognition.openset import class_distances, normalise

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".h264", ".m4v", ".mjpeg", ".mjpg")
DEFAULT_MAX_FRAMES = 20  # frames taken from a video, evenly spread over it
MIN_PHOTOS = 3  # fewer, and the threshold cannot be measured: DEFAULT_THRESHOLD is suggested
DEFAULT_THRESHOLD = 0.8
MARGIN = 0.05  # below the enrolment photos' low end, so a slightly different pose still passes
THRESHOLD_RANGE = (0.5, 0.95)
OUTLIER_GAP = 0.15  # a photo this far below the median similarity probably shows something else
# Photos of *different* dogs score 0.53-0.65 against each other (benchmarks/openset.md): a threshold
# below this lets other animals of the class in.
LOOSE_BELOW = 0.7

Photo = collections.namedtuple("Photo", ["name", "rgb"])
Photo.__doc__ = "One enrolment image: where it came from (file, or file#frame) and its RGB pixels."


@dataclasses.dataclass
class Enrolment:
    """What one `enroll` run measured and wrote.

    Attributes:
      identity: the gallery Identity after the enrolment.
      used: names of the images used.
      skipped: (name, reason) of the unusable ones.
      similarities: leave-one-out cosine similarity of each used image (empty with one image).
      suggested: the threshold the similarities suggest.
      outliers: names of images far below the others.
      nearest: (class, similarity) of the model's training class nearest to the prototype, or None.
      seconds: wall time of reading, embedding and writing.
    """

    identity: object
    used: list
    skipped: list
    similarities: np.ndarray
    suggested: float
    outliers: list
    nearest: tuple
    seconds: float


def collect_photos(paths, max_frames=DEFAULT_MAX_FRAMES):
    """Reads photos, folders of photos and videos into Photos.

    Returns:
      (photos, skipped): usable images, and (name, reason) for each unusable file.
    """
    photos, skipped = [], []
    for path in _expand(paths):
        if path.suffix.lower() in VIDEO_SUFFIXES:
            frames, reason = _video_frames(path, max_frames)
            photos += frames
            if reason:
                skipped.append((str(path), reason))
            continue
        from tl.device.model.image import load_image

        try:
            photos.append(Photo(str(path), load_image(path)))
        except ImageError as e:
            skipped.append((str(path), e.reason))
    return photos, skipped


def _expand(paths):
    for p in map(Path, paths):
        if p.is_dir():
            yield from sorted(f for f in p.rglob("*") if not f.is_dir() and not f.name.startswith("."))
        else:
            yield p


def _video_frames(path, max_frames):
    import cv2

    if not path.is_file():
        return [], "no such file"
    cap = cv2.VideoCapture(str(path))
    try:
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
        if count <= 0:
            return [], "not a video OpenCV can read"
        frames = []
        for i in np.unique(np.linspace(0, count - 1, min(count, max_frames)).round().astype(int)):
            cap.set(cv2.CAP_PROP_POS_FRAMES, int(i))
            ok, bgr = cap.read()
            if ok and bgr is not None:
                frames.append(Photo(f"{path}#{i}", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
        return frames, None if frames else "no decodable frame"
    finally:
        cap.release()


def leave_one_out(embeddings):
    """Similarity of each unit embedding to the normalised mean of the others; empty for fewer than 2."""
    e = np.asarray(embeddings, np.float32)
    if len(e) < 2:
        return np.zeros(0, np.float32)
    rest = normalise(e.sum(0, keepdims=True) - e)
    return np.sum(e * rest, axis=1)


def suggest_threshold(similarities):
    """The threshold the enrolment photos suggest: their low end (10th percentile) minus MARGIN.

    With fewer than MIN_PHOTOS photos there is nothing to measure, and DEFAULT_THRESHOLD is used.
    """
    if len(similarities) < MIN_PHOTOS:
        return DEFAULT_THRESHOLD
    low = float(np.quantile(similarities, 0.1)) - MARGIN
    return round(float(np.clip(low, *THRESHOLD_RANGE)), 2)


def enroll(embedder, name, paths, gallery_path, threshold=None, max_frames=DEFAULT_MAX_FRAMES):
    """Enrols `name` from photos/videos into the gallery (created, or extended); writes it atomically.

    Args:
      embedder: an Embedder.
      name: the identity (checked by `gallery.check_name`).
      paths: photo files, folders of photos, video files.
      gallery_path: the gallery .npz.
      threshold: the identity's similarity threshold; None: the suggested one.
      max_frames: frames taken from each video.

    Returns:
      Enrolment.

    Raises:
      ConfigError: a bad name or threshold.  DataError: no usable image, a damaged gallery.
      ModelError: a gallery from another embedder. Nothing is written in any of these cases.
    """
    start = time.perf_counter()
    gal.check_name(name)
    if threshold is not None and not -1.0 <= threshold <= 1.0:
        raise ConfigError(f"--threshold {threshold}: a cosine similarity, within -1..1 (typically 0.6..0.9)")
    gallery_path = Path(gallery_path)
    if gallery_path.exists():
        gallery = gal.load_gallery(gallery_path)
        gallery.check_embedder(embedder.embedding_id, embedder.dim, embedder.path, gallery_path)
    else:
        gallery = gal.Gallery(embedder.embedding_id, embedder.dim, embedder.path.name)
    photos, skipped = collect_photos(paths, max_frames)
    if not photos:
        detail = "; ".join(f"{n}: {r}" for n, r in skipped[:5]) or "no files given"
        raise DataError(f"no usable image to enrol {name} from ({detail}); give photos (JPEG, PNG...) or a video "
                        f"of the pet. {gallery_path} was not changed")
    emb = np.stack([embedder.embed_image(p.rgb) for p in photos])
    sims = leave_one_out(emb)
    prototype = normalise(emb.mean(0))
    suggested = suggest_threshold(sims)
    chosen = suggested if threshold is None else float(threshold)
    stats = _similarity_stats(sims)
    ident = gal.add_identity(gallery, name, prototype, chosen, [p.name for p in photos], stats)
    gal.save_gallery(gallery_path, gallery)
    outliers = [p.name for p, s in zip(photos, sims) if len(sims) >= MIN_PHOTOS and s < np.median(sims) - OUTLIER_GAP]
    return Enrolment(ident, [p.name for p in photos], skipped, sims, suggested, outliers,
                     _nearest_class(embedder.stats, prototype), time.perf_counter() - start)


def _similarity_stats(sims):
    if not len(sims):
        return {}
    return {"min": round(float(sims.min()), 4), "median": round(float(np.median(sims)), 4),
            "max": round(float(sims.max()), 4), "n": int(len(sims))}


def _nearest_class(stats, prototype):
    if stats is None or stats.dim != len(prototype):
        return None
    dist = class_distances(prototype, stats.prototypes, stats.owner, len(stats.labels))
    best = int(np.argmin(dist))
    return stats.labels[best], float(1.0 - dist[best])


def report_lines(result, gallery_path):
    """What `tl-device enroll` prints: the similarity distribution, the threshold, warnings."""
    ident, sims = result.identity, result.similarities
    lines = [f"enrolled {ident.name}: {len(result.used)} image(s) in {result.seconds:.2f} s -> {gallery_path} "
             f"({len(ident.prototypes)} prototype(s), {ident.photos} image(s) in all)"]
    for name, reason in result.skipped:
        lines.append(f"  skipped {name}: {reason}")
    if len(sims):
        hist = ", ".join(f"{s:.2f}" for s in np.sort(sims))
        lines.append(f"  similarity of each image to the others' prototype: min {sims.min():.2f}, median "
                     f"{np.median(sims):.2f}, max {sims.max():.2f}  [{hist}]")
    if len(sims) < MIN_PHOTOS:
        lines.append(f"  too few images to measure a threshold: using {DEFAULT_THRESHOLD:.2f}; enrol 5-10 photos")
    lines.append(f"  suggested threshold {result.suggested:.2f} (10th percentile - {MARGIN:g}); "
                 f"using {ident.threshold:.2f}")
    if result.nearest is not None:
        lines.append(f"  nearest training class: {result.nearest[0]} (similarity {result.nearest[1]:.2f})")
    for name in result.outliers:
        lines.append(f"  warning: {name} looks unlike the others; check that it shows {ident.name}")
    if ident.threshold < LOOSE_BELOW:
        lines.append(f"  warning: a threshold of {ident.threshold:.2f} also accepts other animals of the same kind "
                     f"(different dogs score 0.5-0.65 against each other); enrol photos of {ident.name} only, taken "
                     "where the door camera sees it")
    return lines
