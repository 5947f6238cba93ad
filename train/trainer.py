"""tl-train's pipeline: scan → cached embeddings → head → (fine-tune) → evaluate → RUN_DIR."""

import contextlib
import dataclasses
import logging
import platform
import sys
import time
from pathlib import Path

import numpy as np

from tl.device.data import atomic
from tl.device.data.metrics import classification_report
from tl.device.errors import DataError
from tl.device.model.contract import InputSpec
from tl.train import artifacts, openset, report
from tl.train import calibration as cal
from tl.train import prior as imagenet
from tl.train.backbones import BackboneSpec, build_backbone
from tl.train.embeddings import embed_samples, view_image
from tl.train.head import HeadConfig, build_head, epoch_bar, fold_temperature, train_head
from tl.train.inputs import check_inputs
from tl.train.litert_embed import setup_embedding
from tl.train.split import stratified_split

log = logging.getLogger(__name__)


@dataclasses.dataclass
class TrainConfig:
    """Everything one training run depends on (recorded in train.json as "args")."""

    data_dir: Path
    out: Path
    val_dir: Path = None
    val_split: float = 0.2
    seed: int = 0
    backbone: BackboneSpec = dataclasses.field(default_factory=BackboneSpec)
    resize: str = "squash"
    views: tuple = ("orig", "flip")
    head: HeadConfig = dataclasses.field(default_factory=HeadConfig)
    fine_tune_layers: int = 0
    fine_tune_epochs: int = 5
    fine_tune_lr: float = 1e-5
    cache_dir: Path = None
    strategy: str = "auto"
    mixed_precision: bool = False
    embedder: str = "auto"
    ray: str = None
    operating_target: float = cal.DEFAULT_TARGET
    imagenet_top: Path = None
    prior_columns: tuple = None  # (dog, other) ImageNet columns kept for the prior; None: the whole top

    def to_json(self):
        d = dataclasses.asdict(self)
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in d.items()}


def _usable(dataset, embedded, what, every_class=True):
    """Labels of the decodable samples; refuses a class left with no usable image."""
    y = np.array([dataset.samples[i].label for i in embedded.kept], dtype=np.int64)
    counts = np.bincount(y, minlength=len(dataset.classes))
    empty = [c for c, n in zip(dataset.classes, counts) if n == 0]
    if empty and not every_class and len(y):
        log.warning("%s: no validation images for %s; their recall cannot be measured", what, ", ".join(empty))
    elif empty:
        raise DataError(f"{what}: class(es) {', '.join(empty)} have no usable image; add readable images to them")
    return y


def _extractor(features):
    """The TensorFlow extractor of a backbone and its embedding size (benchmarks use it)."""
    from tl.train.litert_embed import pooled_model, tf_extractor

    return tf_extractor(pooled_model(features)), features.output_shape[-1]


def build_classifier(features, head):
    """Raw 0..255 RGB in, softmax out: backbone features → global average pooling → head."""
    import keras

    x = keras.layers.GlobalAveragePooling2D(name="pool")(features.output)
    return keras.Model(features.input, head(x), name="classifier")


def _decoded(samples, spec):
    from tl.device.model.image import load_image

    return np.stack([view_image(load_image(s.path), "orig", spec) for s in samples])


@dataclasses.dataclass
class TrainingData:
    """Training and validation embeddings, with the files behind them.

    Attributes:
      x_train, y_train: one row per training image and view (views stacked).
      x_train_orig, y_train_orig: the original view only, one row per training image.
      x_train_views: {view: rows aligned with x_train_orig} for every view.
      x_val, y_val: validation rows (original view).
      train_samples, val_samples: the decodable files, aligned with the *_orig and val rows.
      skipped: every file left out, and why.
      hits, misses: embedding-cache statistics.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_train_orig: np.ndarray
    y_train_orig: np.ndarray
    x_train_views: dict
    x_val: np.ndarray
    y_val: np.ndarray
    train_samples: list
    val_samples: list
    skipped: list
    hits: int
    misses: int


def embed_data(cfg, train_set, val_set, extract, spec, cache, compute=None):
    """Embeds the training (all views) and validation images, splitting when there is no --val-dir.

    `compute` is embed_samples' (None: here; tl.train.cluster's: on a Ray cluster).
    """
    views = tuple(dict.fromkeys(("orig", *cfg.views)))
    emb = embed_samples(train_set.samples, views, extract, spec, cache, desc="train embeddings", compute=compute)
    y_all = _usable(train_set, emb, f"DATA_DIR {cfg.data_dir}")
    skipped, hits, misses = train_set.skipped + emb.skipped, emb.hits, emb.misses
    kept = [train_set.samples[i] for i in emb.kept]
    # The door-camera views are embedded for the open-set radii (tl.train.openset) even when not trained on,
    # for a subset of the images (NaN rows for the others).
    door = [v for v in openset.DOOR_VIEWS if v not in views]
    if door:
        sub = openset.door_subset(y_all)
        demb = embed_samples([kept[i] for i in sub], door, extract, spec, cache, desc="door views", compute=compute)
        hits, misses = hits + demb.hits, misses + demb.misses
        for v in door:
            emb.vectors[v] = np.full_like(emb.vectors["orig"], np.nan)
            emb.vectors[v][sub[demb.kept]] = demb.vectors[v]
        views += tuple(door)
    if val_set is not None:
        vemb = embed_samples(val_set.samples, ("orig",), extract, spec, cache, desc="val embeddings", compute=compute)
        y_val = _usable(val_set, vemb, f"--val-dir {cfg.val_dir}", every_class=False)
        x_val, val_samples = vemb.vectors["orig"], [val_set.samples[i] for i in vemb.kept]
        tr = np.arange(len(kept))
        skipped += val_set.skipped + vemb.skipped
        hits, misses = hits + vemb.hits, misses + vemb.misses
    else:
        tr, va = stratified_split(y_all, cfg.val_split, cfg.seed, train_set.classes)
        x_val, y_val, val_samples = emb.vectors["orig"][va], y_all[va], [kept[i] for i in va]
    # Every cached view of a training image is one more training row with the same label.
    return TrainingData(
        x_train=np.concatenate([emb.vectors[v][tr] for v in cfg.views]),
        y_train=np.tile(y_all[tr], len(cfg.views)),
        x_train_orig=emb.vectors["orig"][tr],
        y_train_orig=y_all[tr],
        x_train_views={v: emb.vectors[v][tr] for v in views},
        x_val=x_val,
        y_val=y_val,
        train_samples=[kept[i] for i in tr],
        val_samples=val_samples,
        skipped=skipped,
        hits=hits,
        misses=misses,
    )


def train(cfg, echo=print, datasets=None):
    """Runs a whole training and writes RUN_DIR; returns the train.json record.

    Args:
      cfg: the TrainConfig.
      echo: prints a line.
      datasets: (train, val) from `check_inputs`, when the caller has checked them already.
    """
    import keras

    from tl.train.distribute import make_strategy, set_mixed_precision

    t0 = time.perf_counter()
    timings = {}
    # Every input is checked before RUN_DIR is made: a refused run leaves no empty folder behind.
    train_set, val_set = datasets or check_inputs(cfg)
    labels = train_set.classes
    spec = InputSpec(cfg.backbone.size, cfg.backbone.size, resize=cfg.resize)
    keras.utils.set_random_seed(cfg.seed)
    strategy = make_strategy(cfg.strategy)
    mixed = set_mixed_precision(cfg.mixed_precision)
    with strategy.scope():
        features = build_backbone(cfg.backbone)
    engine, extract, cache = setup_embedding(cfg, features, mixed)
    cache.check_writable()  # a read-only cache is read, with one warning, and not extended
    dim = features.output_shape[-1]
    timings["setup_s"] = time.perf_counter() - t0

    t = time.perf_counter()
    with _compute_on(cfg, engine, features, spec) as cluster:
        data = embed_data(cfg, train_set, val_set, extract, spec, cache, compute=cluster and cluster.compute)
    timings["embed_s"] = time.perf_counter() - t
    echo(f"embeddings: {data.hits} from cache, {data.misses} computed ({engine.name}"
         f"{', on Ray' if cluster else ''}); {len(data.skipped)} file(s) skipped")

    t = time.perf_counter()
    prior = _prior(cfg, dim, data.x_train)
    with strategy.scope():
        head = build_head(dim, len(labels), cfg.head, seed=cfg.seed, prior=prior, prior_dogs=_prior_dogs(prior, labels))
        phases = [("head", train_head(head, data.x_train, data.y_train, data.x_val, data.y_val, cfg.head,
                                      seed=cfg.seed, callbacks=[epoch_bar("head", cfg.head.epochs)]))]
        model = build_classifier(features, head)
    timings["head_s"] = time.perf_counter() - t

    t = time.perf_counter()
    if cfg.fine_tune_layers > 0:
        from tl.train.finetune import fine_tune

        images = (_decoded(data.train_samples, spec), data.y_train_orig, _decoded(data.val_samples, spec), data.y_val)
        with strategy.scope():
            phases.append(("fine-tune", fine_tune(
                model, features.layers[-1], cfg.fine_tune_layers, cfg.fine_tune_epochs, cfg.fine_tune_lr,
                images, cfg.head, seed=cfg.seed, callbacks=[epoch_bar("fine-tune", cfg.fine_tune_epochs)])))
        timings["fine_tune_s"] = time.perf_counter() - t
        # The backbone changed, so the cached embeddings no longer describe the model: score images.
        p_train = model.predict(images[0].astype(np.float32), verbose=0, batch_size=32)
        p_val = model.predict(images[2].astype(np.float32), verbose=0, batch_size=32)
    else:
        # Head only: the head on the cached embeddings computes exactly what the whole model does.
        p_train = head.predict(data.x_train_orig, verbose=0, batch_size=256)
        p_val = head.predict(data.x_val, verbose=0, batch_size=256)
    p_train, p_val, calibration = _calibrate(cfg, head, p_train, p_val, data.y_val, labels)
    echo(cal.describe(calibration["temperature"], calibration["operating_points"]))
    metrics = {
        "val": classification_report(data.y_val, p_val.argmax(1), labels),
        "train": classification_report(data.y_train_orig, p_train.argmax(1), labels),
    }
    timings["evaluate_s"] = time.perf_counter() - t - timings.get("fine_tune_s", 0.0)

    record = make_record(cfg, labels, spec, dim, data, cache, metrics, phases, strategy, mixed)
    record["embedding"] = engine.to_json()
    record["cluster"] = cluster.record() if cluster else None
    record["calibration"] = calibration["temperature"]
    record["operating_points"] = calibration["operating_points"]
    record["imagenet_prior"] = _prior_record(cfg, prior)
    stats = openset.from_run(cfg, data, model, spec, labels, p_val)
    record["openset"] = openset.summarise(stats)
    echo(openset.describe(stats))
    write_run(cfg.out, model, labels, phases, record, timings, t0)
    # After train.json, which records the file's hash: tl-convert refuses statistics of another run.
    openset.write_stats(cfg.out, stats)
    return record


def _compute_on(cfg, engine, features, spec):
    """A context: the Ray cluster that embeds (tl.train.cluster.RayEmbedder), or None without --ray."""
    if not cfg.ray:
        return contextlib.nullcontext(None)
    from tl.train.cluster import RayEmbedder

    return RayEmbedder(cfg.ray, engine, features, cfg.backbone, spec)


def _prior(cfg, dim, x):
    """The ImageNet top for the head's prior (tl.train.prior; with --prior-columns, the columns chosen on x),
    or None when off or unavailable."""
    if cfg.head.prior_scale <= 0:
        return None
    return imagenet.load_prior(cfg.backbone, dim, cfg.imagenet_top, x=x, columns=cfg.prior_columns)


def _prior_record(cfg, prior):
    """train.json's "imagenet_prior": scale, weights file, the top's form, ImageNet's group ranges (None when off)."""
    if prior is None:
        return None
    return {"scale": cfg.head.prior_scale, "weights": prior[2], **imagenet.describe(prior[0]),
            "groups": {k: [a, b - 1] for k, (a, b) in imagenet.GROUPS.items()}}


def _prior_dogs(prior, labels):
    """The classes the ImageNet dog margin is added to; warns when the prior is on and none is named dog."""
    if prior is None:
        return []
    dogs = imagenet.prior_classes(labels)
    if not dogs:
        log.warning("ImageNet prior: no class is named dog; training without it")
    return dogs


def _calibrate(cfg, head, p_train, p_val, y_val, labels):
    """Fits the temperature on the held-out scores, folds it into the head, picks the operating points.

    Returns:
      (calibrated train scores, calibrated held-out scores, {"temperature": record, "operating_points": ops}).
    """
    t, record = cal.calibrate(p_val, y_val)
    fold_temperature(head, t)
    p_train, p_val = (cal.softmax(cal.log_scores(p) / t).astype(np.float32) for p in (p_train, p_val))
    ops = cal.operating_points(p_val, y_val, labels, cfg.operating_target)
    ops["source"] = "held-out validation images (--val-dir)" if cfg.val_dir else f"the {cfg.val_split:g} validation split"
    return p_train, p_val, {"temperature": record, "operating_points": ops}


def make_record(cfg, labels, spec, dim, data, cache, metrics, phases, strategy, mixed):
    """The train.json content (timings are added when the files are written)."""
    import tensorflow as tf

    return {
        "tl_edge": _version(),
        "args": cfg.to_json(),
        "seed": cfg.seed,
        "labels": labels,
        "input": spec.to_dict(),
        "backbone": {**dataclasses.asdict(cfg.backbone), "embedding_dim": int(dim), "weights_id": cfg.backbone.weights_id()},
        "data": {
            "train_dir": str(Path(cfg.data_dir).resolve()),
            "val_dir": str(Path(cfg.val_dir).resolve()) if cfg.val_dir else None,
            "val_split": None if cfg.val_dir else cfg.val_split,
            "val_files": None if cfg.val_dir else [[str(Path(s.path).resolve()), s.label] for s in data.val_samples],
            "train_counts": _counts(labels, data.y_train_orig),
            "val_counts": _counts(labels, data.y_val),
            "views": list(cfg.views),
            "skipped": [dataclasses.asdict(s) for s in data.skipped],
            "cache": {"dir": str(cache.dir), "hits": data.hits, "misses": data.misses, "writable": cache.writable},
        },
        "metrics": metrics,
        "history": {name: {k: [round(float(v), 5) for v in vals] for k, vals in h.items()} for name, h in phases},
        "environment": {"strategy": type(strategy).__name__, "replicas": strategy.num_replicas_in_sync,
                        "mixed_precision": mixed, "gpus": len(tf.config.list_physical_devices("GPU"))},
        "versions": _versions(),
    }


def write_run(out, model, labels, phases, record, timings, t0):
    """Writes the RUN_DIR files, each atomically; train.json last, with the final timings."""
    out = atomic.check_writable(out)  # made only now, with everything to put in it
    t = time.perf_counter()
    with atomic.atomic_path(out / artifacts.MODEL, suffix=".keras") as tmp:
        model.save(tmp)
    atomic.write_text(out / artifacts.LABELS, "\n".join(labels) + "\n")
    report.plot_history(out / artifacts.HISTORY_PNG, phases)
    report.plot_confusion(out / artifacts.CONFUSION_PNG, record["metrics"]["val"]["confusion"], labels)
    timings["write_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - t0
    record["timings"] = {k: round(v, 3) for k, v in timings.items()}
    atomic.write_json(out / artifacts.TRAIN_JSON, record)


def _counts(labels, y):
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=len(labels))
    return {c: int(n) for c, n in zip(labels, counts)}


def _version():
    from tl.device import __version__

    return __version__


def _versions():
    import cv2
    import keras
    import tensorflow as tf

    return {"python": sys.version.split()[0], "platform": platform.platform(), "tensorflow": tf.__version__,
            "keras": keras.__version__, "numpy": np.__version__, "opencv": cv2.__version__}
