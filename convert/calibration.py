"""The representative dataset for int8 calibration: a seeded, class-stratified draw of images.

Images are decoded and resized by the runtime contract (`tl.device.model.image`, `tl.device.model.contract`),
the same path the device uses, so the calibrated ranges are those of the device's real inputs.
"""

import collections
import dataclasses
import logging
from pathlib import Path

import numpy as np
from tqdm import tqdm

from tl.device.data.dataset import Skipped, scan_folder
from tl.device.errors import DataError
from tl.device.model.contract import prepare_image
from tl.device.model.image import load_image

log = logging.getLogger(__name__)

DEFAULT_SAMPLES = 300
DEFAULT_SEED = 0
FLAT = "(no class folder)"  # the group of a folder holding images directly


@dataclasses.dataclass
class Calibration:
    """The calibration images, decoded and prepared.

    Attributes:
      folder: where they came from.
      pixels: (N, H, W, 3) uint8, in the order the converter sees them.
      per_class: {class folder: images used}.
      skipped: Skipped files (undecodable images, hidden files) with reasons.
      unknown_classes: class folders that are not among the model's labels.
      seed: the seed of the draw.
      requested: how many images were asked for.
    """

    folder: Path
    pixels: np.ndarray
    per_class: dict
    skipped: list
    unknown_classes: list
    seed: int
    requested: int = DEFAULT_SAMPLES

    def representative_dataset(self, progress_file=None):
        """Returns the converter's `representative_dataset`: a callable giving a fresh iterator.

        Args:
          progress_file: a text stream to draw a progress bar on while the converter
            calibrates, or None for no bar.
        """

        def generate():
            bar = tqdm(self.pixels, desc="calibrating", unit="img", file=progress_file,
                       disable=progress_file is None, leave=False)
            for x in bar:
                # The model's input is raw 0..255 pixels as float32, one image per call.
                yield [x[None].astype(np.float32)]

        return generate

    def summary(self):
        """A JSON-able summary for convert.json and the model metadata."""
        return {
            "folder": str(self.folder),
            "samples": int(len(self.pixels)),
            "per_class": dict(self.per_class),
            "seed": self.seed,
            "skipped": len(self.skipped),
        }

    def describe(self):
        """One line for the terminal: how many images, from where, per class."""
        counts = ", ".join(f"{k} {v}" for k, v in self.per_class.items())
        skipped = f"; skipped {len(self.skipped)} unusable file(s)" if self.skipped else ""
        short = f"; asked for {self.requested}, the folder has no more usable" if len(self.pixels) < self.requested else ""
        return f"calibration: {len(self.pixels)} images from {self.folder} ({counts}){skipped}{short}"


def list_groups(folder):
    """Returns ({class folder: [image paths]}, skipped) for a class-per-folder or a flat folder.

    Calibration needs no labels, so a folder holding the images directly is fine too.

    Raises:
      DataError: the folder is missing or holds no files.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"calibration folder {folder} does not exist or is not a folder; fix --calib-dir")
    has_classes = any(p.is_dir() and not p.name.startswith(".") for p in folder.iterdir())
    if has_classes:
        data = scan_folder(folder, what="calibration folder")
        groups = collections.defaultdict(list)
        for s in data.samples:
            groups[data.classes[s.label]].append(s.path)
        return dict(groups), list(data.skipped)
    # Not is_file(): a broken link or a special file is listed, so its decode failure is reported.
    files = sorted(p for p in folder.iterdir() if not p.is_dir() and not p.name.startswith("."))
    if not files:
        raise DataError(f"calibration folder {folder} holds no images; fix --calib-dir")
    return {FLAT: files}, []


def draw_stratified(groups, n, seed, load):
    """Draws up to `n` usable items round-robin across groups, each group in a seeded shuffled order.

    Round-robin over *usable* items keeps the classes balanced even when some files are corrupt:
    a file that fails to load is replaced by the next one of the same class.

    Args:
      groups: {name: [paths]}.
      n: how many to draw.
      seed: seed of the per-group shuffles; the same inputs give the same draw.
      load: path -> array; raises DataError (ImageError) for an unusable file.

    Returns:
      (chosen, skipped): [(group, path, array)] in draw order, and [Skipped].
    """
    rng = np.random.default_rng(seed)
    queues = {}
    for name in sorted(groups):
        paths = sorted(groups[name])
        queues[name] = collections.deque(paths[i] for i in rng.permutation(len(paths)))
    chosen, skipped = [], []
    while len(chosen) < n and queues:
        for name in list(queues):
            if len(chosen) >= n:
                break
            item = _next_usable(queues[name], load, skipped)
            if item is None:
                del queues[name]  # this class has no usable images left
                continue
            chosen.append((name, *item))
    return chosen, skipped


def _next_usable(queue, load, skipped):
    while queue:
        path = queue.popleft()
        try:
            return path, load(path)
        except DataError as e:
            skipped.append(Skipped(str(path), getattr(e, "reason", str(e))))
            log.warning("calibration: skipped %s", e)
    return None


def load_calibration(folder, spec, n=DEFAULT_SAMPLES, seed=DEFAULT_SEED, labels=None, progress=True):
    """Draws and prepares the calibration images.

    Args:
      folder: class-per-folder (or flat) image folder.
      spec: the model's InputSpec.
      n: number of images wanted.
      seed: seed of the draw.
      labels: the model's labels, to warn about class folders it does not know (they are used).
      progress: show a progress bar.

    Raises:
      DataError: when no image in the folder can be used.
    """
    groups, skipped = list_groups(folder)
    unknown = sorted(g for g in groups if labels is not None and g != FLAT and g not in labels)
    if unknown:
        log.warning(
            "calibration folder %s has classes the model does not know (%s); using them anyway, since "
            "calibration needs no labels", folder, ", ".join(unknown),
        )
    bar = tqdm(total=min(n, sum(map(len, groups.values()))), desc="calibration images", unit="img",
               disable=not progress, leave=False)

    def load(path):
        pixels = prepare_image(load_image(path), spec)
        bar.update(1)
        return pixels

    with bar:
        chosen, bad = draw_stratified(groups, n, seed, load)
    if not chosen:
        example = f" (e.g. {bad[0].path}: {bad[0].reason})" if bad else ""
        raise DataError(
            f"calibration folder {folder} has no usable images{example}; point --calib-dir at photos "
            "like the ones the device will see"
        )
    per_class = collections.Counter(g for g, _, _ in chosen)
    return Calibration(
        folder=Path(folder),
        pixels=np.stack([x for _, _, x in chosen]),
        per_class={g: per_class[g] for g in sorted(per_class)},
        skipped=skipped + bad,
        unknown_classes=unknown,
        seed=seed,
        requested=n,
    )
