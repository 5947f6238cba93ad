"""The ImageNet backbone's own knowledge as a head input: is this a dog breed, a domestic cat, or something else?

MobileNetV2's ImageNet top is one Dense layer on the same pooled features tl-train embeds. Its 1000
softmax scores, summed into groups (ImageNet classes 151-268 are dog breeds, 281-285 domestic cats,
the rest everything else: foxes, horses, birds, people's clothes...), tell the head what a million
photos taught the backbone about species pets/train never shows. The head sees the group scores next
to the embedding (scaled by `prior_scale`, so L2 decay lets it lean on them), inside the model: every
runtime computes them, at the cost of one 1280x1000 matrix product (under 1 % of the backbone's work).
"""

import logging
import typing
from pathlib import Path

import numpy as np

from tl.device.errors import ConfigError, DataError
from tl.train.weights import TOP_FILE, keras_cache_dir

log = logging.getLogger(__name__)

GROUPS = {"dog": (151, 269), "cat": (281, 286)}  # ImageNet index ranges [start, stop); the rest is "other"
GROUP_NAMES = ("dog", "cat", "other")
DEFAULT_SCALE = 10.0
# Rank of a low-rank top (0: none). Rank 64 (1280x64 + 64x1000, int8 file 2.99 MB) keeps the margin on pets
# (correlation 0.97) but not on species pets/ lacks, and lost the prior's effect on shift
# (benchmarks/generalisation.md): not the default.
DEFAULT_RANK = 0
# Exact ImageNet columns kept (dog breeds, others), chosen on the training embeddings (`select_columns`,
# tl-train --prior-columns); by default all 1000 are kept (1.3 MB of the int8 file). (45, 65) makes the int8
# file 2.95 MB and keeps shift's false dogs (4.1 %) but loses dog recall (74.8 % vs 91.3 %,
# benchmarks/generalisation.md): not the default.
SMALL_COLUMNS = (45, 65)


class Columns(typing.NamedTuple):
    """A subset of the ImageNet top's columns: the dog margin over `dog` and `rest` (ImageNet class indices)."""

    kernel: np.ndarray  # (D, 1000), the full kernel; the model carries only the chosen columns
    dog: np.ndarray  # ImageNet indices of the dog breeds kept
    rest: np.ndarray  # ImageNet indices of the other classes kept


class Factors(typing.NamedTuple):
    """A low-rank ImageNet kernel: x @ u @ v stands for x @ kernel (see `factorise`)."""

    u: np.ndarray  # (D, r)
    v: np.ndarray  # (r, K)


def group_matrix(num_classes=1000):
    """(1000, 3) 0/1 matrix summing ImageNet scores into dog, cat and other."""
    m = np.zeros((num_classes, len(GROUP_NAMES)), np.float32)
    m[:, 2] = 1.0
    for g, (a, b) in enumerate(GROUPS.values()):
        m[a:b, g], m[a:b, 2] = 1.0, 0.0
    return m


def read_top(path):
    """Reads the ImageNet classifier's (kernel (D, 1000), bias (1000,)) from a Keras .h5 file with the top.

    Raises:
      DataError: unreadable file, or no 1000-class Dense layer in it.
    """
    import h5py

    found = {}

    def visit(name, obj):  # returns None, or h5py stops visiting
        if isinstance(obj, h5py.Dataset) and "predictions" in name:
            found.setdefault(name.rsplit("/", 1)[-1].split(":")[0], obj[()])

    try:
        with h5py.File(path, "r") as f:
            f.visititems(visit)
    except OSError as e:
        raise DataError(f"ImageNet top weights {path}: cannot read ({e}); pass --imagenet-top PATH to a "
                        "MobileNetV2 .h5 with its top, or --prior-scale 0") from e
    kernel, bias = found.get("kernel"), found.get("bias")
    if kernel is None or bias is None or kernel.shape[-1] != 1000:
        raise DataError(f"ImageNet top weights {path}: no 1000-class 'predictions' layer; pass a MobileNetV2 "
                        ".h5 with include_top=True weights, or --prior-scale 0")
    return kernel.astype(np.float32), bias.astype(np.float32)


def find_top(explicit=None):
    """The ImageNet top weights file: `explicit`, else the Keras cache's MobileNetV2 1.0 top, else None."""
    if explicit:
        if not Path(explicit).is_file():
            raise DataError(f"--imagenet-top {explicit} does not exist; give a MobileNetV2 .h5 file with its top")
        return Path(explicit)
    cached = keras_cache_dir() / TOP_FILE
    return cached if cached.is_file() else None


def load_prior(backbone, dim, explicit=None, x=None, rank=DEFAULT_RANK, columns=None):
    """(kernel, bias, source) of the ImageNet top for `backbone`, or None (with a warning) when there is none.

    With `x` (n, dim) training embeddings, the kernel takes the form the model carries: with `rank` > 0
    a rank-`rank` `Factors` fitted to the logits of x (`factorise`), else with `columns` (dog, rest)
    the `Columns` chosen on x (`select_columns`); otherwise the full kernel.

    Raises:
      ConfigError: the top does not fit the backbone's embedding size.
    """
    if backbone.name != "mobilenet_v2" or backbone.alpha != 1.0:
        if explicit is None:
            log.warning("ImageNet prior: only MobileNetV2 1.0's top is found automatically; training without it")
            return None
    path = find_top(explicit)
    if path is None:
        log.warning("ImageNet prior: no top weights in the Keras cache (make seed-weights copies them); "
                    "training without it")
        return None
    kernel, bias = read_top(path)
    if kernel.shape[0] != dim:
        raise ConfigError(f"ImageNet top {path} takes {kernel.shape[0]} features, the backbone gives {dim}; "
                          "pass the top of the same backbone, or --prior-scale 0")
    if x is not None and 0 < rank < min(kernel.shape):
        u, v, bias = factorise(kernel, bias, rank, x)
        return Factors(u, v), bias, str(path)
    if x is not None and columns:
        return select_columns(kernel, bias, x, *columns), bias, str(path)
    return kernel, bias, str(path)


def _cover(z, m):
    """Greedy: indices of `m` columns of z (n, K) whose max comes closest to each row's max (summed shortfall)."""
    target, cur, chosen = z.max(1), np.full(len(z), -np.inf), []
    for _ in range(min(m, z.shape[1])):
        short = (target[:, None] - np.maximum(cur[:, None], z)).sum(0)
        short[chosen] = np.inf
        j = int(np.argmin(short))
        chosen.append(j)
        cur = np.maximum(cur, z[:, j])
    return np.array(chosen, np.int64)


def select_columns(kernel, bias, x, n_dog, n_rest):
    """`Columns` of the top that keep the dog margin of the embeddings x (n, D), chosen by ImageNet's own verdict.

    Where the full top calls x a dog breed (margin > 0), `n_dog` breed columns whose max comes closest
    to the best breed logit; where it does not, `n_rest` other columns whose max comes closest to the
    best other logit (greedy cover, `_cover`). Leaving a column out can only lower its group's max, so
    a dropped breed makes a dog less sure, a dropped other class a non-dog more dog-like: the rest
    columns are chosen where that matters.
    """
    z = logits(x, kernel, bias)
    dog, rest = group_indices(z.shape[1])
    margin = z[:, dog].max(1) - z[:, rest].max(1)
    is_dog = margin > 0
    pick_dog = _cover(z[is_dog][:, dog], n_dog) if is_dog.any() else np.arange(min(n_dog, len(dog)))
    pick_rest = _cover(z[~is_dog][:, rest], n_rest) if (~is_dog).any() else np.arange(min(n_rest, len(rest)))
    return Columns(np.asarray(kernel, np.float32), np.sort(dog[pick_dog]), np.sort(rest[pick_rest]))


def describe(kernel):
    """The train.json record of the top's form: full, low rank, or the ImageNet columns kept."""
    if isinstance(kernel, Factors):
        return {"form": "rank", "rank": int(kernel.u.shape[1])}
    if isinstance(kernel, Columns):
        return {"form": "columns", "rank": None, "dog_columns": kernel.dog.tolist(),
                "rest_columns": kernel.rest.tolist()}
    return {"form": "full", "rank": None}


def group_indices(num_classes=1000):
    """(dog, rest): the ImageNet indices of the dog breeds and of every other class, ascending."""
    dog = np.arange(*GROUPS["dog"])
    return dog, np.setdiff1d(np.arange(num_classes), dog)


def group_kernels(kernel, bias):
    """{"dog": (k, b), "rest": (k, b)}: the columns whose max makes each side of the dog margin.

    For `Factors` the kernels act on the r-dimensional projection x @ u.
    """
    if isinstance(kernel, Columns):
        k, dog, rest = kernel.kernel, kernel.dog, kernel.rest
    else:
        k = kernel.v if isinstance(kernel, Factors) else kernel
        dog, rest = group_indices(k.shape[1])
    return {"dog": (k[:, dog], bias[dog]), "rest": (k[:, rest], bias[rest])}


def logits(x, kernel, bias):
    """(n, 1000) ImageNet logits of (n, D) embeddings; `kernel` an array or `Factors`."""
    x = np.asarray(x, np.float64)
    if isinstance(kernel, Columns):
        kernel = kernel.kernel
    if isinstance(kernel, Factors):
        return x @ kernel.u @ kernel.v + bias
    return x @ kernel + bias


def group_scores(x, kernel, bias):
    """(n, 3) dog/cat/other group scores of (n, D) pooled embeddings (numpy; for studies and checks)."""
    z = logits(x, kernel, bias)
    z -= z.max(1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(1, keepdims=True)
    return (p @ group_matrix(z.shape[1])).astype(np.float32)


def dog_margin(x, kernel, bias):
    """(n,) best dog-breed logit minus best other logit of (n, D) embeddings (numpy twin of `prior_branch`)."""
    x = np.asarray(x, np.float64)
    if isinstance(kernel, Factors):
        x = x @ kernel.u
    best = {name: (x @ k + bb).max(1) for name, (k, bb) in group_kernels(kernel, bias).items()}
    return best["dog"] - best["rest"]


def factorise(kernel, bias, rank, x=None, ridge=0.0):
    """Rank-`rank` form (u (D, r), v (r, K), bias (K,)) of the top: x @ u @ v + bias ~ x @ kernel + bias.

    Without `x`: the truncated SVD of the kernel (the best rank-r kernel in Frobenius norm, from
    ImageNet's weights alone). With `x` (n, D) features: the best rank-r kernel for those inputs
    (reduced-rank regression: the error is measured on x @ kernel, the logits, not on the weights), with
    `ridge` x the mean feature power added on every input direction so directions x never uses still count.
    The bias is kept: every error is in the kernel.
    """
    k = np.asarray(kernel, np.float64)
    if x is None:
        root = np.eye(k.shape[0])
    else:
        x = np.asarray(x, np.float64)
        m = x.T @ x / len(x)
        m += ridge * np.trace(m) / len(m) * np.eye(len(m))
        e, q = np.linalg.eigh(m)
        root = (q * np.sqrt(np.maximum(e, 1e-12))) @ q.T  # m^(1/2), symmetric
    w, s, vt = np.linalg.svd(root @ k, full_matrices=False)
    v = vt[:rank]
    u = k @ v.T  # the rank-r kernel is k @ (v.T @ v): the logits projected on their r main directions
    return u.astype(np.float32), v.astype(np.float32), np.asarray(bias, np.float32)


def prior_classes(labels):
    """Indices of the classes that get the ImageNet dog margin: those named like "dog"/"dogs"."""
    return [i for i, c in enumerate(labels) if c.lower().rstrip("s") == "dog"]


def prior_branch(x, kernel, bias, scale, num_classes, dog_classes):
    """Frozen Keras layers from the pooled embedding `x` to (batch, C) logit offsets.

    `kernel` is the (D, 1000) ImageNet kernel, its `Columns` (only those columns are carried), or its
    low-rank `Factors` (then one more Dense layer, "imagenet_basis", projects x on the r directions first).

    The offset of each dog class is `scale` times the ImageNet dog margin (the best dog-breed logit
    minus the best logit of every other ImageNet class: log-odds of "a dog breed" against "anything
    else"); other classes get 0. Standard layers only (Dense, Reshape, GlobalMaxPooling1D, Subtract),
    so the model saves, loads and converts like any other, int8 included.
    """
    import keras

    x_in = x
    if isinstance(kernel, Factors):  # one shared (D, r) projection, then r -> ImageNet logits
        basis = keras.layers.Dense(kernel.u.shape[1], use_bias=False, trainable=False, name="imagenet_basis")
        x_in = basis(x)
        basis.set_weights([kernel.u])
    best = {}
    for name, (k, bb) in group_kernels(kernel, bias).items():
        dense = keras.layers.Dense(k.shape[1], trainable=False, name=f"imagenet_{name}")
        z = keras.layers.Reshape((k.shape[1], 1), name=f"imagenet_{name}_column")(dense(x_in))
        best[name] = keras.layers.GlobalMaxPooling1D(name=f"imagenet_{name}_best")(z)
        dense.set_weights([k, bb])
    margin = keras.layers.Subtract(name="imagenet_dog_margin")([best["dog"], best["rest"]])
    offset = keras.layers.Dense(num_classes, use_bias=False, trainable=False, name="imagenet_prior")
    out = offset(margin)
    row = np.zeros((1, num_classes), np.float32)
    row[0, dog_classes] = scale
    offset.set_weights([row])
    return out
