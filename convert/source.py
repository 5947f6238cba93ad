"""What tl-convert converts: a tl-train RUN_DIR, or any Keras model file / SavedModel with its labels."""

import dataclasses
import logging
from pathlib import Path

from tl.convert.reference import KERAS_SUFFIXES, is_saved_model
from tl.device.data.dataset import scan_folder
from tl.device.errors import ConfigError, DataError, ModelError
from tl.device.model.contract import InputSpec
from tl.device.model.metadata import find_labels
from tl.train.artifacts import MODEL, read_run

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Source:
    """A model to convert and what is known about it before TensorFlow loads it.

    Attributes:
      path: what the user named (RUN_DIR, model file, or SavedModel folder).
      kind: "run", "keras" or "saved_model".
      model_path: the model itself (RUN_DIR/model.keras for a run).
      out_dir: where the .tflite files, labels.txt and convert.json go.
      labels: class names in output order.
      spec: the InputSpec, or None until the model's own input shape decides it.
      run: the RunInfo for a RUN_DIR, else None.
    """

    path: Path
    kind: str
    model_path: Path
    out_dir: Path
    labels: list
    spec: InputSpec
    run: object = None

    @property
    def default_calib_dir(self):
        """The training images recorded in train.json, or None."""
        return self.run.train_dir if self.run is not None else None

    def describe(self):
        """Returns a JSON-able summary for convert.json and the model files' metadata."""
        d = {"kind": self.kind, "path": str(self.path), "model": str(self.model_path)}
        if self.run is not None:
            for key in ("backbone", "seed"):
                if key in self.run.record:
                    d[key] = self.run.record[key]
        return d


def open_source(path, labels_path=None, image_size=None, out_dir=None):
    """Finds out what `path` is and reads its labels and input spec (without TensorFlow).

    Args:
      path: a RUN_DIR, a Keras model file (.keras, .h5) or a SavedModel folder.
      labels_path: labels file, for model files (default: labels.txt beside the model).
      image_size: input side in pixels, for model files whose input size is not fixed.
      out_dir: output folder (default: the RUN_DIR, or the model file's folder).

    Raises:
      ModelError: missing or unrecognised model, missing labels.
      ConfigError: options that do not apply to a RUN_DIR.
    """
    path = Path(path).absolute()
    out_dir = Path(out_dir).absolute() if out_dir is not None else None
    if path.is_dir() and not is_saved_model(path):
        if labels_path is not None or image_size is not None:
            raise ConfigError(
                "--labels and --image-size are for model files; a RUN_DIR carries its own labels.txt and "
                "train.json"
            )
        run = read_run(path)  # raises ModelError naming what is missing
        spec = run.input
        if spec is None:
            raise ModelError(f"{path}/train.json has no input spec; train again with tl-train")
        return Source(path, "run", run.model_path, Path(out_dir or path), run.labels, spec, run=run)
    if not path.exists() and path.suffix.lower() not in KERAS_SUFFIXES:
        read_run(path)  # raises the RUN_DIR message, which says how to make one
    if not path.exists():
        raise ModelError(
            f"{path} does not exist; give a tl-train RUN_DIR, a Keras model file ({', '.join(KERAS_SUFFIXES)}) "
            "or a SavedModel folder"
        )
    kind = "saved_model" if path.is_dir() else "keras"
    if kind == "keras" and path.suffix.lower() not in KERAS_SUFFIXES:
        raise ModelError(
            f"{path} is not a Keras model file ({', '.join(KERAS_SUFFIXES)}) nor a SavedModel folder "
            f"nor a RUN_DIR with {MODEL}"
        )
    labels = find_labels(path, labels_path, required=True)
    spec = InputSpec(image_size, image_size) if image_size else None
    return Source(path, kind, path, Path(out_dir or path.parent), labels, spec)


def resolve_spec(source, reference):
    """Settles the InputSpec from the source and the loaded model, and checks the output size.

    Args:
      source: the Source.
      reference: the loaded `tl.convert.reference.Reference`.

    Returns:
      The InputSpec to convert, calibrate and check with.

    Raises:
      ModelError: the model's input size or output size does not match.
    """
    if reference.num_outputs != len(source.labels):
        raise ModelError(
            f"model {source.model_path} outputs {reference.num_outputs} scores but there are "
            f"{len(source.labels)} labels ({', '.join(source.labels[:5])}...); pass the labels file that "
            "belongs to this model"
        )
    spec = source.spec
    if spec is None:
        if reference.input_hw is None:
            raise ModelError(f"model {source.model_path} accepts any image size; pass --image-size S")
        return InputSpec(*reference.input_hw)
    if reference.input_hw is not None and tuple(reference.input_hw) != (spec.height, spec.width):
        h, w = reference.input_hw
        raise ModelError(
            f"model {source.model_path} takes {h}x{w} images, not {spec.height}x{spec.width}; "
            f"use --image-size {h}" + (" (or leave it out)" if source.run is None else "")
        )
    return spec


def eval_samples(source, eval_dir=None):
    """Returns (samples, where) for the accuracy check: --eval-dir, else the run's validation images.

    Class folders the model does not know are skipped by `scan_folder` (and listed by it).
    """
    if eval_dir is not None:
        data = scan_folder(eval_dir, classes=source.labels, what="--eval-dir")
        _warn_skipped_classes(data)
        return data.samples, str(eval_dir)
    if source.run is None:
        return [], None
    try:
        samples = source.run.val_samples()
    except DataError as e:
        raise DataError(f"{e}; the validation images of {source.path} moved? pass --eval-dir DIR") from e
    where = str(source.run.val_dir) if source.run.val_dir else f"validation split of {source.run.train_dir}"
    return samples, where


def _warn_skipped_classes(data):
    if data.unknown_classes:
        log.warning(
            "%s: class folder(s) %s are not among the model's labels; left out of the accuracy check",
            data.root, ", ".join(data.unknown_classes),
        )
