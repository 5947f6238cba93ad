"""Choosing validation images: a stratified, seeded split, or a separate folder."""

import numpy as np

from tl.device.errors import DataError


def stratified_split(labels, fraction, seed, classes):
    """Splits sample indices into train and validation, per class, reproducibly.

    Each class contributes round(fraction × its count) images to validation, at least one, and keeps
    at least one for training.

    Args:
      labels: class index of each sample.
      fraction: share of each class for validation, in (0, 1).
      seed: random seed; the same seed and files give the same split.
      classes: class names, for messages.

    Returns:
      (train_indices, val_indices), sorted numpy arrays.

    Raises:
      DataError: when a class has fewer than 2 usable images (nothing to split).
    """
    if not 0 < fraction < 1:
        raise DataError(f"--val-split {fraction} must be between 0 and 1 (e.g. 0.2), or use --val-dir")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c, name in enumerate(classes):
        idx = np.flatnonzero(labels == c)
        if len(idx) < 2:
            raise DataError(
                f"class {name!r} has {len(idx)} usable image(s), too few to split into train and validation; "
                "add images to it, or give a separate --val-dir"
            )
        idx = rng.permutation(idx)
        n_val = min(len(idx) - 1, max(1, round(fraction * len(idx))))
        val.extend(idx[:n_val])
        train.extend(idx[n_val:])
    return np.sort(np.array(train, dtype=np.int64)), np.sort(np.array(val, dtype=np.int64))
