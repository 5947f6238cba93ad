"""The RUN_DIR a training writes, and reading it back (for tl-convert and benchmarks)."""

import dataclasses
import json
from pathlib import Path

from tl.device.data.dataset import Sample, scan_folder
from tl.device.errors import ModelError
from tl.device.model.contract import InputSpec
from tl.device.model.metadata import read_labels

MODEL = "model.keras"
LABELS = "labels.txt"
TRAIN_JSON = "train.json"
HISTORY_PNG = "history.png"
CONFUSION_PNG = "confusion.png"


@dataclasses.dataclass
class RunInfo:
    """What tl-train left in a RUN_DIR.

    Attributes:
      run_dir: the folder.
      model_path: RUN_DIR/model.keras.
      labels: class names in output order.
      input: the InputSpec the model was trained with.
      train_dir: the training images' folder.
      val_dir: the validation folder, or None when a split of train_dir was used.
      val_files: with a split, the validation files as (path, label index) pairs.
      record: the whole train.json.
    """

    run_dir: Path
    model_path: Path
    labels: list
    input: InputSpec
    train_dir: Path
    val_dir: Path
    val_files: list
    record: dict

    def val_samples(self):
        """Returns the validation images as Samples, however they were chosen."""
        if self.val_files:
            return [Sample(Path(p), int(y)) for p, y in self.val_files]
        if self.val_dir is not None:
            return scan_folder(self.val_dir, classes=self.labels, what="validation folder").samples
        return []


def read_run(run_dir):
    """Reads a RUN_DIR written by tl-train.

    Raises:
      ModelError: naming the missing piece and how to get it.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ModelError(f"RUN_DIR {run_dir} does not exist; train one with: tl-train DATA_DIR --out {run_dir}")
    model_path = run_dir / MODEL
    if not model_path.is_file():
        raise ModelError(f"{run_dir} has no {MODEL}; it is not a finished tl-train run (train again with --out {run_dir})")
    labels = read_labels(run_dir / LABELS) if (run_dir / LABELS).is_file() else None
    record = {}
    if (run_dir / TRAIN_JSON).is_file():
        try:
            record = json.loads((run_dir / TRAIN_JSON).read_text(encoding="utf-8"))
        except ValueError as e:
            raise ModelError(f"{run_dir / TRAIN_JSON} is not valid JSON ({e}); train again") from e
    labels = labels or record.get("labels")
    if not labels:
        raise ModelError(f"{run_dir} has no {LABELS}; train again, or write one label per line in output order")
    data = record.get("data", {})
    return RunInfo(
        run_dir=run_dir,
        model_path=model_path,
        labels=labels,
        input=InputSpec.from_dict(record["input"]) if "input" in record else None,
        train_dir=Path(data["train_dir"]) if data.get("train_dir") else None,
        val_dir=Path(data["val_dir"]) if data.get("val_dir") else None,
        val_files=data.get("val_files") or [],
        record=record,
    )
