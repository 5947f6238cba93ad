"""Open-set rejection: is a frame like anything the model was trained on, or `unknown`?

tl-train summarises each class's training embeddings as a few prototypes (spherical k-means
centres) and the cosine distances of held-out training images to them, as quantiles; tl-convert
carries both into the model file (`openset.npz` in its appended archive). On the device a frame is
unknown when its embedding is farther from the predicted class's nearest prototype than that
class's radius at the chosen quantile; whatever is far from every class is then unknown too. A
model without an embedding output falls back on max-softmax: a frame is unknown when its top
score is below the same quantile of held-out top scores (cheaper, and much weaker).
"""

import collections
import dataclasses
import io
import json

import numpy as np

from tl.device.errors import ConfigError, ModelError

STATS_NAME = "openset.npz"
FORMAT = 1
# Radii are stored at these quantiles of held-out in-distribution distances; others interpolate.
QUANTILES = (0.9, 0.95, 0.98, 0.99, 0.995, 1.0)
# 98 % of held-out training images of a class lie within its radius: on pets/val this rejected
# 0.4 % of images (only misclassified ones) and every unknown test image (benchmarks/openset.md).
DEFAULT_QUANTILE = 0.98
EMBEDDING, SOFTMAX = "embedding", "max-softmax"

Check = collections.namedtuple("Check", ["unknown", "label", "value", "limit"])
Check.__doc__ = ("One frame's open-set check: unknown or not, the predicted class, and the measured value "
                 "against its limit (embedding: distance > radius is unknown; max-softmax: score < floor).")


@dataclasses.dataclass
class OpenSetStats:
    """Per-class embedding statistics of a training set.

    Attributes:
      labels: class names, in the classifier's output order.
      prototypes: (P, D) float32 unit vectors, a few per class.
      owner: (P,) class index of each prototype.
      quantiles: (Q,) the quantiles the radii are given at.
      radii: (Q, C) cosine distance of held-out training images to their class's nearest
        prototype, at each quantile.
      softmax: (Q,) top softmax score that held-out images reach at each quantile (the fallback's
        floor: quantile q keeps a share q of them); NaN when unmeasured.
      meta: JSON-able facts (counts per class, folds, default quantile, where the numbers come from).
    """

    labels: tuple
    prototypes: np.ndarray
    owner: np.ndarray
    quantiles: np.ndarray
    radii: np.ndarray
    softmax: np.ndarray
    meta: dict = dataclasses.field(default_factory=dict)

    @property
    def dim(self):
        """Embedding size."""
        return int(self.prototypes.shape[1])

    def radius(self, quantile):
        """Returns the (C,) per-class radii at `quantile`, interpolated between stored quantiles."""
        q = check_quantile(quantile, self.quantiles)
        return np.array([np.interp(q, self.quantiles, self.radii[:, c]) for c in range(len(self.labels))],
                        np.float32)

    def softmax_floor(self, quantile):
        """Returns the max-softmax floor at `quantile` (NaN when the run did not measure it)."""
        return float(np.interp(check_quantile(quantile, self.quantiles), self.quantiles, self.softmax))

    def to_bytes(self):
        """Serialises to deflated .npz bytes (float16 prototypes: unit vectors need no more, and the file stays small).

        Deflated inside the npz, so the model archive can still store the member uncompressed; np.load reads both.
        """
        buf = io.BytesIO()
        meta = dict(self.meta, format=FORMAT, labels=list(self.labels))
        np.savez_compressed(buf, prototypes=self.prototypes.astype(np.float16), owner=self.owner.astype(np.int16),
                            quantiles=self.quantiles.astype(np.float32), radii=self.radii.astype(np.float32),
                            softmax=self.softmax.astype(np.float32), meta=np.array(json.dumps(meta)))
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data, where="open-set statistics"):
        """Reads what `to_bytes` wrote.

        Raises:
          ModelError: naming `where`, for damaged or newer-format data.
        """
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                arrays = {k: z[k] for k in ("prototypes", "owner", "quantiles", "radii", "softmax")}
        except (OSError, ValueError, KeyError) as e:
            raise ModelError(f"{where}: damaged open-set statistics ({e}); train and convert again") from e
        if meta.get("format", 0) > FORMAT:
            raise ModelError(f"{where}: open-set statistics of a newer tl-edge (format {meta['format']}); upgrade")
        labels = tuple(meta.pop("labels"))
        return cls(labels, normalise(arrays["prototypes"].astype(np.float32)), arrays["owner"].astype(np.int64),
                   arrays["quantiles"], arrays["radii"], arrays["softmax"], meta)

    def summary(self):
        """A JSON-able summary for train.json and model metadata (no arrays)."""
        q = list(self.quantiles)
        return {
            "prototypes": {c: int(np.sum(self.owner == i)) for i, c in enumerate(self.labels)},
            "dim": self.dim,
            "radii": {f"{v:g}": [round(float(r), 4) for r in self.radii[i]] for i, v in enumerate(q)},
            "softmax_floor": {f"{v:g}": round(float(s), 4) for v, s in zip(q, self.softmax) if np.isfinite(s)},
            **self.meta,
        }


def check_quantile(quantile, stored=QUANTILES):
    """Checks that a quantile lies within the stored ones; returns it as a float.

    Raises:
      ConfigError: naming the allowed range.
    """
    lo, hi = float(min(stored)), float(max(stored))
    q = float(quantile)
    if not lo <= q <= hi:
        raise ConfigError(f"openset_quantile = {quantile}: must be within {lo:g}..{hi:g} (the share of known "
                          f"images kept; default {DEFAULT_QUANTILE:g})")
    return q


def normalise(x):
    """Scales rows (or one vector) to unit L2 length; zero rows stay zero."""
    x = np.asarray(x, np.float32)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


def class_distances(embedding, prototypes, owner, n_classes):
    """Cosine distance of one unit embedding to each class's nearest prototype, shape (C,)."""
    sims = prototypes @ embedding
    best = np.full(n_classes, -1.0, np.float32)
    np.maximum.at(best, owner, sims)
    return 1.0 - best


def stats_from_model(info):
    """Returns the OpenSetStats a model file carries, or None."""
    data = info.files.get(STATS_NAME)
    return None if data is None else OpenSetStats.from_bytes(data, "model open-set statistics")


class OpenSet:
    """Judges frames known or unknown against a model's open-set statistics.

    Args:
      stats: the OpenSetStats.
      quantile: share of known images kept; None: the statistics' default.
      shift: distance the model's variant adds on average (int8 noise), measured by tl-convert.
      use_embedding: False: max-softmax only (the model has no embedding output).

    Attributes:
      method: "embedding" or "max-softmax".
      limits: (C,) radii + shift (embedding), or the max-softmax floor.
    """

    def __init__(self, stats, quantile=None, shift=0.0, use_embedding=True):
        self.stats = stats
        self.quantile = check_quantile(quantile if quantile is not None else
                                       stats.meta.get("default_quantile", DEFAULT_QUANTILE), stats.quantiles)
        self.method = EMBEDDING if use_embedding else SOFTMAX
        self.shift = float(shift)
        if self.method == EMBEDDING:
            self.limits = stats.radius(self.quantile) + np.float32(self.shift)
        else:
            self.limits = stats.softmax_floor(self.quantile)
            if not np.isfinite(self.limits):
                raise ModelError("the model has no embedding output and its statistics have no max-softmax floor; "
                                 "convert it again with tl-convert, or run with --no-openset")

    def check(self, scores, embedding=None):
        """Returns the Check of one frame from its scores and (unit) embedding."""
        top = int(np.argmax(scores))
        label = self.stats.labels[top]
        if self.method == SOFTMAX:
            value = float(scores[top])
            return Check(value < self.limits, label, value, float(self.limits))
        dist = class_distances(embedding, self.stats.prototypes, self.stats.owner, len(self.stats.labels))
        value, limit = float(dist[top]), float(self.limits[top])
        return Check(value > limit, label, value, limit)

    def describe(self):
        """One line for the start event: which method, at which quantile."""
        if self.method == SOFTMAX:
            return f"open-set max-softmax < {self.limits:.2f} (q {self.quantile:g}; no embedding output)"
        radii = [f"{c} {r:.3f}" for c, r in zip(self.stats.labels, self.limits)]
        shown = 10  # a 1001-class model: the first radii and a count, not a 30 KB line
        radii = ", ".join(radii[:shown]) + (f", … ({len(radii)} classes)" if len(radii) > shown else "")
        return f"open-set embedding distance (q {self.quantile:g}: {radii})"
