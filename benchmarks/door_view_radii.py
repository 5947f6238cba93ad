"""How many training images per class need door views for the open-set radii (tl.train.openset.DOOR_VIEW_IMAGES).

The 0.99 radii (held-out distances of originals and their IR/small views) computed with door views of at
most CAP images per class (`door_subset`), against all images, with the bootstrap spread of the
all-images estimate. pets/train only, from the embedding cache (run tl-train once first).

Usage: python benchmarks/door_view_radii.py [--data ../shared/data/pets/train] [--caps 400 300 250 200 150]
"""

import argparse
import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tl.device.data.dataset import scan_folder  # noqa: E402
from tl.device.model.contract import InputSpec  # noqa: E402
from tl.train import openset as tos  # noqa: E402
from tl.train.backbones import BackboneSpec  # noqa: E402
from tl.train.embeddings import EmbeddingCache, default_cache_dir, embed_samples  # noqa: E402


def radii(x, y, views, labels, cap, seed=0):
    """The 0.99 radii with door views of at most `cap` images per class (None: all)."""
    if cap is not None:
        sub = tos.door_subset(y, cap)
        masked = []
        for v in views:
            a = np.full_like(v, np.nan)
            a[sub] = v[sub]
            masked.append(a)
        views = masked
    stats = tos.compute_stats(x, y, labels, seed, views=views)
    return stats.radii[list(stats.quantiles).index(np.float32(0.99))]


def _fmt(values):
    return "[" + ", ".join(f"{v:.4f}" for v in values) + "]"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data" / "pets" / "train"))
    ap.add_argument("--caps", type=int, nargs="*", default=[400, 300, 250, 200, 150])
    args = ap.parse_args()
    bb = BackboneSpec()
    cache = EmbeddingCache(default_cache_dir(), bb.cache_key("squash"))
    ds = scan_folder(args.data)
    e = embed_samples(ds.samples, ("orig", "ir", "small"), None, InputSpec(224, 224, resize="squash"), cache, desc="cache")
    y = np.array([ds.samples[i].label for i in e.kept])
    x, views = e.vectors["orig"], [e.vectors["ir"], e.vectors["small"]]
    print("classes", ds.classes, "counts", np.bincount(y).tolist())
    for cap in [None, *args.caps]:
        print(f"cap {cap or 'all'}: 0.99 radii seed 0 {_fmt(radii(x, y, views, ds.classes, cap))}, "
              f"seed 1 {_fmt(radii(x, y, views, ds.classes, cap, 1))}")
    d = tos.held_out_distances(tos.normalise(x), y, len(ds.classes), 0,
                               views=[tos.normalise(v) for v in views]).reshape(1 + len(views), -1)
    rng = np.random.default_rng(0)
    for c, name in enumerate(ds.classes):
        dc = d[:, y == c].reshape(-1)
        boot = [np.quantile(rng.choice(dc, len(dc)), 0.99) for _ in range(200)]
        print(f"{name}: all-images 0.99 radius, bootstrap std {np.std(boot):.4f} over {len(dc)} distances")


if __name__ == "__main__":
    main()
