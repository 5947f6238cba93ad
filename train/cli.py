"""tl-train: a folder of photos, one sub-folder per class → a MobileNet transfer classifier in RUN_DIR."""

import logging
import os
import sys
from pathlib import Path

import click

from tl.device.cli.common import CONTEXT_SETTINGS, EXIT_INTERRUPTED, cli_logging, exit_codes, exits_on_error
from tl.device.model.contract import RESIZE_RULES

PRIOR_SCALE = 0.5  # chosen in benchmarks/generalisation.md
CONTEXT = {**CONTEXT_SETTINGS, "show_default": True}


@click.command("tl-train", context_settings=CONTEXT, epilog=exit_codes())
@click.argument("data_dir", type=click.Path(path_type=Path))
@click.option("--out", "-o", "out", required=True, type=click.Path(path_type=Path), help="RUN_DIR to write model.keras, labels.txt, train.json and plots into (created if missing).")
@click.option("--val-dir", type=click.Path(path_type=Path), default=None, help="Folder of validation images with the same class sub-folders. Without it, --val-split of DATA_DIR is held out.")
@click.option("--val-split", type=float, default=0.2, help="Share of each class held out for validation when there is no --val-dir (stratified, seeded).")
@click.option("--seed", type=int, default=0, help="Random seed for the split, initialisation and shuffling: same seed, same run.")
@click.option("--backbone", type=click.Choice(["mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large"]), default="mobilenet_v2", help="Pretrained feature extractor from keras.applications.")
@click.option("--alpha", type=float, default=1.0, help="Backbone width multiplier (MobileNetV2: 0.35 0.5 0.75 1.0 1.3 1.4).")
@click.option("--image-size", type=click.Choice(["96", "128", "160", "192", "224"]), default="224", help="Square model input size in pixels; smaller is faster on the device.")
@click.option("--resize", type=click.Choice(RESIZE_RULES), default="squash", help="How pictures become H×W: squash the whole frame, or crop its centre to a square first.")
@click.option("--weights", default="imagenet", help="'imagenet' (Keras cache, downloaded if missing), 'none' (random; tests only), or a path to a no-top weights .h5 file.")
@click.option("--views", default="flip", help="Augmented views cached as extra training rows, comma-separated from flip,crop,ir,small ('none' for originals only). ir: a night camera's monochrome, flat, noisy frame; small: the subject farther away, off-centre (both are always embedded for the open-set radii).")
@click.option("--epochs", type=int, default=100, help="Most head-training epochs; early stopping on validation loss usually stops sooner and keeps the best epoch.")
@click.option("--patience", type=int, default=10, help="Epochs without validation-loss improvement before early stopping.")
@click.option("--batch-size", type=int, default=32, help="Training batch size.")
@click.option("--learning-rate", type=float, default=1e-3, help="Adam learning rate for the head.")
@click.option("--dropout", type=float, default=0.2, help="Dropout on the pooled features.")
@click.option("--hidden", type=int, default=0, help="Units of an optional hidden ReLU layer in the head (0: linear head, which generalises best on small data).")
@click.option("--l2", type=float, default=1e-4, help="L2 weight decay on the head's kernels.")
@click.option("--label-smoothing", type=float, default=0.1, help="Label smoothing of the cross-entropy targets.")
@click.option("--class-weights/--no-class-weights", default=True, help="Weight classes inversely to their image counts (for imbalanced folders).")
@click.option("--prior-scale", type=float, default=PRIOR_SCALE, help="Weight of the ImageNet top's dog-breed log-odds added to a class named dog (the backbone's knowledge of 1000 classes keeps foxes, horses and people out); 0: off.")
@click.option("--imagenet-top", type=click.Path(path_type=Path), default=None, help="MobileNetV2 .h5 with its 1000-class top, for --prior-scale. [default: the Keras cache's, seeded by make seed-weights]")
@click.option("--prior-columns", default=None, metavar="DOG,OTHER", help="Keep only this many of the ImageNet top's dog-breed and other columns for --prior-scale, chosen on the training embeddings (e.g. 45,65: the int8 model is 2.95 MB instead of 4.12 MB, but measured on other-source photos dog recall fell from 91 % to 75 %; benchmarks/generalisation.md). [default: the whole top]")
@click.option("--operating-target", type=float, default=0.01, help="Operating points: each class's threshold is the lowest that at most this share of held-out images of other classes reach (recorded in train.json, carried into the model).")
@click.option("--fine-tune-layers", type=int, default=0, help="After the head, unfreeze this many top backbone layers and fine-tune (0: off).")
@click.option("--fine-tune-epochs", type=int, default=5, help="Most fine-tuning epochs (early stopping applies).")
@click.option("--fine-tune-lr", type=float, default=1e-5, help="Fine-tuning learning rate (low, to nudge pretrained features).")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None, help="Embedding cache folder. [default: $XDG_CACHE_HOME/tl-edge or ~/.cache/tl-edge]")
@click.option("--strategy", type=click.Choice(["auto", "default", "mirrored", "multiworker"]), default="auto", help="tf.distribute strategy for the head and fine-tuning: auto mirrors across the GPUs of this machine when there are several. multiworker was removed (it fails with two workers): use --ray for more machines.")
@click.option("--ray", "ray_address", default=None, metavar="ADDRESS", help="Embed the images on a Ray cluster (host:6379, ray://host:10001, or auto: $RAY_ADDRESS, else a new local cluster); the head trains here. Needs tl-edge[cluster] and image paths every node can read. [default: embed on this machine]")
@click.option("--embedder", type=click.Choice(["auto", "tf", "litert"]), default="auto", help="What runs the backbone over the images: litert (LiteRT/XNNPACK, converted once and cached; ~2x faster on a CPU), tf (TensorFlow), or auto: litert without a GPU, tf with one or with --weights none.")
@click.option("--mixed-precision", is_flag=True, default=False, help="Use mixed_float16 on a GPU (ignored on CPU).")
@click.option("--verbose", "-v", is_flag=True, help="Log more detail.")
@exits_on_error
def main(data_dir, out, val_dir, val_split, seed, backbone, alpha, image_size, resize, weights, views, epochs, patience,
         batch_size, learning_rate, dropout, hidden, l2, label_smoothing, class_weights, prior_scale, imagenet_top,
         prior_columns, operating_target, fine_tune_layers,
         fine_tune_epochs, fine_tune_lr, cache_dir, strategy, ray_address, embedder, mixed_precision, verbose):
    """Train a classifier on DATA_DIR (one sub-folder of images per class) and write RUN_DIR.

    \b
    Example:
      tl-train photos/ --out runs/door --val-dir photos-val/
      tl-train photos/ --out runs/door --val-split 0.2 --image-size 160 --fine-tune-layers 30
      tl-train /shared/photos --out runs/door --ray head:6379   # embed on a Ray cluster
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from tl.train.backbones import BackboneSpec
    from tl.train.embeddings import parse_views
    from tl.train.head import HeadConfig
    from tl.train.inputs import check_inputs
    from tl.train.trainer import TrainConfig

    cfg = TrainConfig(
        data_dir=data_dir, out=out, val_dir=val_dir, val_split=val_split, seed=seed,
        backbone=BackboneSpec(backbone, alpha, int(image_size), None if weights == "none" else weights),
        resize=resize, views=parse_views(views),
        head=HeadConfig(dropout=dropout, hidden=hidden, l2=l2, label_smoothing=label_smoothing, epochs=epochs,
                        patience=patience, batch_size=batch_size, learning_rate=learning_rate, class_weights=class_weights,
                        prior_scale=prior_scale),
        operating_target=operating_target, imagenet_top=imagenet_top, prior_columns=_columns(prior_columns),
        fine_tune_layers=fine_tune_layers, fine_tune_epochs=fine_tune_epochs, fine_tune_lr=fine_tune_lr,
        cache_dir=cache_dir, strategy=strategy, mixed_precision=mixed_precision, embedder=embedder, ray=ray_address,
    )
    _check_numbers(cfg)
    with cli_logging("tl-train", int(verbose), default=logging.WARNING):
        datasets = check_inputs(cfg)  # before TensorFlow starts: a refusal is quick and leaves nothing behind
        if cfg.ray:
            from tl.train.cluster import preflight

            preflight(cfg.ray)
        if not verbose:
            from tl.train.quiet import import_tensorflow

            import_tensorflow()  # TensorFlow's C++ start-up notices would bury the progress bars
        try:
            run(cfg, datasets)
        except KeyboardInterrupt:
            click.echo(f"tl-train: interrupted: nothing was written under a final name in {out}", err=True)
            sys.exit(EXIT_INTERRUPTED)


def _check_numbers(cfg):
    from tl.device.errors import ConfigError
    from tl.train.distribute import REMOVED

    if cfg.strategy in REMOVED:
        raise ConfigError(REMOVED[cfg.strategy])
    h = cfg.head
    if not 0 <= h.dropout < 1:
        raise ConfigError(f"--dropout {h.dropout} must be in [0, 1)")
    for name, value in (("--epochs", h.epochs), ("--batch-size", h.batch_size), ("--patience", h.patience)):
        if value < 1:
            raise ConfigError(f"{name} {value} must be at least 1")
    if cfg.fine_tune_layers < 0 or h.hidden < 0 or h.prior_scale < 0:
        raise ConfigError("--fine-tune-layers, --hidden and --prior-scale cannot be negative")
    if not 0 <= cfg.operating_target < 1:
        raise ConfigError(f"--operating-target {cfg.operating_target} must be a share in [0, 1), e.g. 0.01 for 1 %")


def _columns(text):
    """--prior-columns "DOG,OTHER" as (dog, other) counts, or None."""
    if text is None:
        return None
    from tl.device.errors import ConfigError
    from tl.train.prior import SMALL_COLUMNS, group_indices

    try:
        dog, other = (int(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"--prior-columns {text!r}: give two counts, DOG,OTHER (e.g. {SMALL_COLUMNS[0]},"
                          f"{SMALL_COLUMNS[1]})") from None
    breeds, rest = (len(g) for g in group_indices())
    if not (1 <= dog <= breeds and 1 <= other <= rest):
        raise ConfigError(f"--prior-columns {text}: the ImageNet top has {breeds} dog-breed and {rest} other columns; "
                          f"keep 1-{breeds} and 1-{rest} of them")
    return dog, other


def run(cfg, datasets=None):
    """Trains and prints what happened and where the files are."""
    from tl.train import report
    from tl.train.trainer import train

    click.echo(f"tl-train: {cfg.data_dir} → {cfg.out}  ({cfg.backbone.name} α={cfg.backbone.alpha:g}, {cfg.backbone.size}px)")
    record = train(cfg, echo=click.echo, datasets=datasets)
    skipped = record["data"]["skipped"]
    if skipped:
        click.secho(f"{len(skipped)} file(s) skipped (listed in train.json):", fg="yellow")
        for s in skipped[:10]:
            click.echo(f"  {s['path']}: {s['reason']}")
        if len(skipped) > 10:
            click.echo(f"  … and {len(skipped) - 10} more")
    click.echo("classes: " + ", ".join(f"{c} {n}" for c, n in record["data"]["train_counts"].items()) + " (train images)")
    click.echo(report.format_summary(record))
    click.echo(f"files: {cfg.out}/model.keras, labels.txt, train.json, history.png, confusion.png")
