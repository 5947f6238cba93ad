"""Deny thresholds as operating points over held-out door-camera views: the alternative to a fixed 0.99.

For a tl-train run's float model: each class's operating point (tl.train.calibration.operating_points, 1 %
of other classes' held-out images reach it) on pets/val originals, then with their IR and small door views
added; and how high held-out IR dogs score "cat". tl-device's DENY_THRESHOLD (0.99) was compared against the
thresholds printed here on the door scenes (`tl-device score --config` with a `[thresholds]` table).

Usage: python benchmarks/deny_thresholds.py RUN_DIR [--val ../shared/data/pets/val]
"""

import argparse
import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="a tl-train RUN_DIR (its model.keras)")
    ap.add_argument("--val", default=str(HERE.parent.parent / "shared" / "data" / "pets" / "val"))
    args = ap.parse_args()
    from tl.train.quiet import import_tensorflow

    import_tensorflow()
    import keras

    from tl.device.data.dataset import scan_folder
    from tl.device.model.contract import InputSpec
    from tl.train import calibration as cal
    from tl.train.backbones import BackboneSpec, build_backbone
    from tl.train.embeddings import EmbeddingCache, default_cache_dir, embed_samples
    from tl.train.trainer import _extractor

    bb = BackboneSpec()
    extract, _ = _extractor(build_backbone(bb))
    cache = EmbeddingCache(default_cache_dir(), bb.cache_key("squash"))
    ds = scan_folder(args.val)
    e = embed_samples(ds.samples, ("orig", "ir", "small"), extract, InputSpec(224, 224, resize="squash"), cache,
                      desc="val views")
    y = np.array([ds.samples[i].label for i in e.kept])
    model = keras.models.load_model(args.run / "model.keras")
    head = keras.Model(model.get_layer("pool").output, model.output)
    scores = {v: head.predict(e.vectors[v], verbose=0) for v in ("orig", "ir", "small")}
    for views in (("orig",), ("orig", "ir"), ("orig", "ir", "small")):
        s, yy = np.concatenate([scores[v] for v in views]), np.tile(y, len(views))
        print(f"operating points on held-out {'+'.join(views)}: {cal.operating_points(s, yy, ds.classes)['thresholds']}")
    if {"dog", "cat"} <= set(ds.classes):
        dog, cat = ds.classes.index("dog"), ds.classes.index("cat")
        q = np.quantile(scores["ir"][y == dog, cat], [0.5, 0.9, 0.95, 0.99])
        print("held-out IR dogs, 'cat' score at quantiles 0.5/0.9/0.95/0.99:", " ".join(f"{v:.3f}" for v in q))


if __name__ == "__main__":
    main()
