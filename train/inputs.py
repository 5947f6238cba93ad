"""tl-train's inputs, checked before TensorFlow starts: the class folders line up, and RUN_DIR can be made."""

from tl.device.data import atomic
from tl.device.data.dataset import scan_folder
from tl.device.errors import DataError


def load_data(cfg):
    """Scans the training folder (and the validation folder), checking the classes line up."""
    train = scan_folder(cfg.data_dir, what="DATA_DIR")
    if len(train.classes) < 2:
        raise DataError(f"DATA_DIR {cfg.data_dir} has one class ({train.classes[0]}); a classifier needs at least 2 class folders")
    val = None
    if cfg.val_dir is not None:
        val = scan_folder(cfg.val_dir, classes=train.classes, what="--val-dir")
        if val.unknown_classes:
            raise DataError(
                f"--val-dir {cfg.val_dir} has class folder(s) {', '.join(val.unknown_classes)} that DATA_DIR "
                f"lacks (classes: {', '.join(train.classes)}); rename or remove them"
            )
    return train, val


def check_inputs(cfg):
    """Scans the data folders and proves RUN_DIR can be made, creating nothing.

    Returns:
      (train, val) Datasets, as `load_data` gives them.

    Raises:
      DataError: folders that cannot be trained on. OutputError: an --out that cannot be made.
    """
    datasets = load_data(cfg)
    atomic.check_creatable(cfg.out)
    return datasets
