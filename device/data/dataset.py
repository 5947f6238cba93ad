"""Class-per-folder image datasets: DATA_DIR/<class>/**/<image>, as Keras and Model Maker read them."""

import dataclasses
from pathlib import Path

from tl.device.errors import DataError


@dataclasses.dataclass(frozen=True)
class Sample:
    """One image file and the index of its class."""

    path: Path
    label: int


@dataclasses.dataclass(frozen=True)
class Skipped:
    """A file left out, and why (shown on screen and written to reports)."""

    path: str
    reason: str


@dataclasses.dataclass
class Dataset:
    """The files found under a class-per-folder root.

    Attributes:
      root: the folder.
      classes: class names (sub-folder names), sorted; a sample's label indexes this list.
      samples: every candidate image file (not yet decoded).
      skipped: files left out while scanning (hidden, outside a class folder).
      unknown_classes: folder names not in the `classes` the scan was asked to map onto.
    """

    root: Path
    classes: list
    samples: list
    skipped: list
    unknown_classes: list = dataclasses.field(default_factory=list)

    def counts(self):
        """Returns {class: number of samples}."""
        counts = {c: 0 for c in self.classes}
        for s in self.samples:
            counts[self.classes[s.label]] += 1
        return counts


def _hidden(rel):
    return any(part.startswith(".") for part in rel.parts)


def scan_folder(root, classes=None, what="DATA_DIR"):
    """Lists the image candidates of a class-per-folder dataset.

    Sub-folders of a class folder are searched too (their images belong to the class). Hidden files
    and folders are skipped and reported. Whether a file really is an image is decided when it is
    decoded, not by its extension, so a PNG named .jpg is fine and a .txt is reported then.

    Args:
      root: the dataset folder.
      classes: if given, the class list to map folder names onto (e.g. the model's labels);
        folders not in it are reported as skipped.
      what: how to name the folder in error messages (the CLI option).

    Raises:
      DataError: when the folder is missing, empty, or has no class sub-folders.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{what} {root} does not exist or is not a folder; point it at a folder with one sub-folder per class")
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    skipped = []
    for p in sorted(root.iterdir()):
        if p.is_file():
            skipped.append(Skipped(str(p), "not inside a class folder"))
    if not folders:
        raise DataError(
            f"{what} {root} has no class sub-folders; put each class's images in its own folder, "
            f"e.g. {root}/dog/*.jpg and {root}/cat/*.jpg"
        )
    if classes is None:
        classes = folders
    index = {c: i for i, c in enumerate(classes)}
    samples, unknown = [], []
    for folder in folders:
        if folder not in index:
            unknown.append(folder)
            skipped.append(Skipped(str(root / folder), f"class folder {folder!r} is not one of the model's classes"))
            continue
        for path in sorted((root / folder).rglob("*")):
            rel = path.relative_to(root)
            if path.is_dir():
                continue
            if _hidden(rel):
                skipped.append(Skipped(str(path), "hidden file"))
                continue
            samples.append(Sample(path, index[folder]))
    if not samples:
        raise DataError(f"{what} {root} holds no files in its class folders ({', '.join(folders)}); add images")
    return Dataset(root=root, classes=list(classes), samples=samples, skipped=skipped, unknown_classes=unknown)
