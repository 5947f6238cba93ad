"""Open-set statistics of a training run: per-class prototypes and held-out distance quantiles.

Computed from the embeddings tl-train already has (the frozen backbone's cached pooled features,
original view), so they cost no extra pass over the images. Each class gets a few prototypes
(spherical k-means centres of its unit embeddings); its radius at quantile q is the q-quantile of
the cosine distances of *held-out* images to their class's nearest prototype (k-fold: centres fitted
without the fold). Distances of the fitted images themselves would be too small, and the radius too
tight, the more so the more prototypes a class has.
"""

import hashlib
import logging
from pathlib import Path

import numpy as np

from tl.device.data import atomic
from tl.device.recognition.openset import (
    DEFAULT_QUANTILE,
    QUANTILES,
    STATS_NAME,
    OpenSetStats,
    class_distances,
    normalise,
)

log = logging.getLogger(__name__)

MAX_PROTOTYPES = 8  # per class: enough for a few modes (breeds, poses, night shots), small in the model
IMAGES_PER_PROTOTYPE = 10  # fewer images per centre and a centre describes single photos, not the class
FOLDS = 5
# Radii from held-out distances of the originals *and* their door-camera views (tl.train.embeddings):
# what a new camera does to a known class. With them, this quantile keeps new-source dogs and cats
# (benchmarks/generalisation.md); the classifier's operating point keeps the unknowns out.
DOOR_VIEWS = ("ir", "small")
DOOR_QUANTILE = 0.99
# Door views are rendered and embedded for at most this many training images per class (evenly spaced in
# file order). On pets/train (400 dogs, 400 cats) 200 give the 0.99 radii of all 400 within their bootstrap
# noise (dog 0.529 vs 0.531, std 0.014); 150 did not (dog 0.585): python benchmarks/door_view_radii.py.
DOOR_VIEW_IMAGES = 200
KMEANS_ITERATIONS = 30


def prototype_count(n):
    """How many prototypes a class of `n` images gets."""
    return int(np.clip(n // IMAGES_PER_PROTOTYPE, 1, MAX_PROTOTYPES))


def spherical_kmeans(x, k, seed=0, iterations=KMEANS_ITERATIONS):
    """Clusters unit vectors by cosine similarity (k-means++ start); returns (k, D) unit centres."""
    x = normalise(x)
    if len(x) <= k:
        return x.copy()
    rng = np.random.default_rng(seed)
    centres = [x[rng.integers(len(x))]]
    for _ in range(k - 1):
        d = np.maximum(1.0 - (x @ np.array(centres).T).max(1), 0.0) ** 2
        # All points on a centre already (duplicate images): any point will do.
        centres.append(x[rng.choice(len(x), p=d / d.sum())] if d.sum() > 0 else x[rng.integers(len(x))])
    centres = np.array(centres)
    for _ in range(iterations):
        assign = (x @ centres.T).argmax(1)
        new = np.array([normalise(x[assign == j].sum(0)) if np.any(assign == j) else centres[j] for j in range(k)])
        if np.allclose(new, centres, atol=1e-6):
            break
        centres = new
    return centres.astype(np.float32)


def class_prototypes(x, y, n_classes, seed=0):
    """Prototypes of every class: ((P, D) unit centres, (P,) class of each)."""
    protos, owner = [], []
    for c in range(n_classes):
        xc = x[y == c]
        centres = spherical_kmeans(xc, prototype_count(len(xc)), seed + c)
        protos.append(centres)
        owner += [c] * len(centres)
    return np.concatenate(protos), np.array(owner, np.int64)


def held_out_distances(x, y, n_classes, seed=0, folds=FOLDS, views=()):
    """Each image's cosine distance to its class's nearest prototype, fitted without the image's fold.

    Args:
      views: further (n, D) unit embeddings of the same images under other views (door-camera
        renderings); their held-out distances follow the originals'.

    Returns:
      (n * (1 + len(views)),) distances; NaN for an image alone in its class.
    """
    rng = np.random.default_rng(seed)
    sets = [x, *views]
    out = np.full((len(sets), len(x)), np.nan, np.float32)
    for c in range(n_classes):
        idx = rng.permutation(np.where(y == c)[0])
        k = min(folds, len(idx))
        for f in range(k if len(idx) > 1 else 0):
            held, rest = idx[f::k], np.setdiff1d(idx, idx[f::k])
            centres = spherical_kmeans(x[rest], prototype_count(len(rest)), seed + c)
            for i, v in enumerate(sets):
                out[i, held] = 1.0 - (v[held] @ centres.T).max(1)
    return out.reshape(-1)


def door_subset(y, cap=DOOR_VIEW_IMAGES):
    """Indices of the images whose door views are embedded: every image of a class up to `cap`, else `cap` evenly spaced."""
    y = np.asarray(y)
    keep = []
    for c in np.unique(y):
        idx = np.where(y == c)[0]
        keep.extend(idx if len(idx) <= cap else idx[np.linspace(0, len(idx) - 1, cap).round().astype(int)])
    return np.sort(np.asarray(keep, dtype=np.int64))


def class_radii(distances, y, n_classes, quantiles=QUANTILES):
    """(Q, C) quantiles of each class's held-out distances; a class without any gets the widest other radius."""
    radii = np.full((len(quantiles), n_classes), np.nan, np.float32)
    for c in range(n_classes):
        d = distances[(y == c) & np.isfinite(distances)]
        if len(d):
            radii[:, c] = np.quantile(d, quantiles)
    if np.isnan(radii).any():
        log.warning("open-set: a class has a single image, so its radius is borrowed from the widest other class")
        widest = np.nanmax(radii, axis=1) if np.isfinite(radii).any() else np.ones(len(quantiles), np.float32)
        radii = np.where(np.isnan(radii), widest[:, None], radii)
    return radii


def softmax_floors(val_scores, quantiles=QUANTILES):
    """(Q,) top-score floors: quantile q keeps a share q of held-out images; NaN without any."""
    if val_scores is None or not len(val_scores):
        return np.full(len(quantiles), np.nan, np.float32)
    top = np.asarray(val_scores, np.float32).max(1)
    return np.quantile(top, 1.0 - np.asarray(quantiles)).astype(np.float32)


def compute_stats(x, y, labels, seed=0, val_scores=None, meta=None, views=(), quantile=DEFAULT_QUANTILE):
    """OpenSetStats of embeddings `x` (n, D) with labels `y`; `val_scores` feed the max-softmax fallback.

    Args:
      views: (n, D) embeddings of the same images under door-camera views: their held-out distances
        widen the radii to what a new camera does to a known class (prototypes stay on the originals).
      quantile: the default quantile recorded for the device.
    """
    x, y = normalise(x), np.asarray(y, np.int64)
    views = [normalise(v) for v in views]
    n = len(labels)
    prototypes, owner = class_prototypes(x, y, n, seed)
    distances = held_out_distances(x, y, n, seed, views=views)
    if views:  # images without door views (NaN rows, see door_subset) leave the originals out too: the mix stays even
        missing = ~np.all([np.isfinite(v).all(1) for v in views], axis=0)
        distances[: len(x)][missing] = np.nan
    radii = class_radii(distances, np.tile(y, 1 + len(views)), n)
    counts = {c: int(np.sum(y == i)) for i, c in enumerate(labels)}
    info = {"default_quantile": quantile, "folds": FOLDS, "counts": counts, "metric": "cosine",
            "rule": "unknown when the distance to the predicted class's nearest prototype exceeds its radius",
            **(meta or {})}
    return OpenSetStats(tuple(labels), prototypes, owner, np.array(QUANTILES, np.float32), radii,
                        softmax_floors(val_scores), info)


def validation_check(stats, x_val, y_val, val_scores, quantile=DEFAULT_QUANTILE):
    """What the rejection costs on the validation set (float embeddings): rejected share and accuracy."""
    if x_val is None or not len(x_val):
        return {}
    x_val, pred = normalise(x_val), np.asarray(val_scores).argmax(1)
    radius = stats.radius(quantile)
    dist = np.array([class_distances(e, stats.prototypes, stats.owner, len(stats.labels))[p]
                     for e, p in zip(x_val, pred)])
    unknown = dist > radius[pred]
    correct = pred == np.asarray(y_val)
    return {"quantile": quantile, "images": int(len(pred)), "rejected": round(float(unknown.mean()), 4),
            "accuracy": round(float(correct.mean()), 4),
            "accuracy_with_rejection": round(float((correct & ~unknown).mean()), 4)}


def from_run(cfg, data, model, spec, labels, val_scores):
    """The run's statistics: from the cached embeddings, or (after fine-tuning) from the fine-tuned backbone."""
    x_train, x_val, source = data.x_train_orig, data.x_val, "cached frozen-backbone embeddings, original view"
    views = [v for v in DOOR_VIEWS if v in data.x_train_views]
    if cfg.fine_tune_layers > 0:
        # Fine-tuning moved the backbone: the cached embeddings no longer describe the model.
        x_train, x_val = _pooled(model, data.train_samples, spec), _pooled(model, data.val_samples, spec)
        source, views = "fine-tuned backbone embeddings, original view", []
    meta = {"source": source, "radius_views": ["orig", *views]}
    stats = compute_stats(x_train, data.y_train_orig, labels, cfg.seed, val_scores, meta,
                          views=[data.x_train_views[v] for v in views],
                          quantile=DOOR_QUANTILE if views else DEFAULT_QUANTILE)
    stats.meta["validation"] = validation_check(stats, x_val, data.y_val, val_scores, stats.meta["default_quantile"])
    return stats


def _pooled(model, samples, spec):
    import keras

    from tl.device.model.image import load_image
    from tl.train.embeddings import view_image

    pooled = keras.Model(model.input, model.get_layer("pool").output)
    pixels = np.stack([view_image(load_image(s.path), "orig", spec) for s in samples]).astype(np.float32)
    return pooled.predict(pixels, verbose=0, batch_size=32)


def describe(stats):
    """One line for tl-train's output: prototypes, and what rejection costs on the validation images."""
    protos = "+".join(str(int(np.sum(stats.owner == i))) for i in range(len(stats.labels)))
    v = stats.meta.get("validation") or {}
    cost = (f"; at q {v['quantile']:g} it rejects {100 * v['rejected']:.1f} % of validation images (accuracy "
            f"{100 * v['accuracy']:.1f} % -> {100 * v['accuracy_with_rejection']:.1f} %)") if v else ""
    return f"open-set: {protos} prototypes ({'/'.join(stats.labels)}){cost}"


def summarise(stats):
    """The train.json entry: the statistics' summary and the hash of openset.npz (tl-convert checks it)."""
    return {"file": STATS_NAME, "sha256": hashlib.sha256(stats.to_bytes()).hexdigest(), **stats.summary()}


def write_stats(out, stats):
    """Writes RUN_DIR/openset.npz atomically."""
    atomic.write_bytes(Path(out) / STATS_NAME, stats.to_bytes())
