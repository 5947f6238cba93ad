"""How small can the ImageNet prior be: fidelity of low-rank and column-subset forms of the top to the full one.

The prior (tl.train.prior) adds scale x the ImageNet dog margin (best dog-breed logit minus best
other logit) to the dog class. Each approximation here is judged against the full top on the cached
embeddings of pets/train (views orig, flip, ir, small) and pets/val (orig), plus the coral non-pet
photos (animals, people, objects pets/ never shows): correlation and max/mean abs error of the margin,
agreement of its sign (a dog breed on top or not), and agreement of the argmax of the softmax group
scores (dog / cat / other). shift/ is never read. Column subsets (`tp.select_columns`: n dog-breed
columns + m other columns, chosen on pets/train's embeddings by ImageNet's own verdict) are also chosen
on cats and dogs only and checked on pets' "other" images.

Usage: python benchmarks/prior_size.py [--data ../shared/data] [--columns-only]
Writes benchmarks/prior_size.json next to this script.
"""

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tl.device.data.dataset import scan_folder  # noqa: E402
from tl.device.model.contract import InputSpec  # noqa: E402
from tl.train import prior as tp  # noqa: E402

RANKS = (32, 48, 64, 80, 96, 128)
COLUMNS = ((30, 50), (40, 70), (45, 65), (55, 55), (60, 60), (118, 60), (50, 100))
COLUMN_BYTES = 1280 + 24 + 4  # int8 weights + per-channel scale/zero point (and the bias's) + int32 bias
CORAL = ("bird.png", "owl.jpg", "parrot.jpg", "grace_hopper.png", "cat.png", "cat_720p.jpg", "pets.jpg",
         "imprinting_cat_train_0.png", "imprinting_dog_train_0.png", "imprinting_cat_test_0.png",
         "imprinting_dog_test_0.png")


def embeddings(data):
    """{set name: (n, 1280)} from the embedding cache (pets) and the backbone (coral photos)."""
    from tl.device.model.image import load_image
    from tl.train.backbones import BackboneSpec, build_backbone
    from tl.train.embeddings import EmbeddingCache, default_cache_dir, embed_samples, view_image
    from tl.train.quiet import import_tensorflow
    from tl.train.trainer import _extractor

    import_tensorflow()
    bb, spec = BackboneSpec(), InputSpec(224, 224, resize="squash")
    extract, _ = _extractor(build_backbone(bb))
    cache = EmbeddingCache(default_cache_dir(), bb.cache_key("squash"))
    out, other = {}, {}
    for name, views in (("pets/train", ("orig", "flip", "ir", "small")), ("pets/val", ("orig",))):
        ds = scan_folder(data / name)
        e = embed_samples(ds.samples, views, extract, spec, cache, desc=name)
        out[name] = np.concatenate([e.vectors[v] for v in views])
        y = np.array([ds.samples[i].label for i in e.kept] * len(views))
        other[name] = y == ds.classes.index("other")
    imgs = [view_image(load_image(data / "coral/images" / n), "orig", spec) for n in CORAL]
    out["coral photos"] = extract(np.stack(imgs))
    return out, other


def fidelity(x, full, approx):
    """Margin and group-argmax agreement of `approx` (kernel, bias) against `full` on embeddings x."""
    m, ma = tp.dog_margin(x, *full), tp.dog_margin(x, *approx)
    err = np.abs(ma - m)
    if isinstance(approx[0], tp.Columns):  # the model carries only the margin; group scores are the full top's
        g = ga = np.zeros((len(x), 3))
    else:
        g, ga = tp.group_scores(x, *full), tp.group_scores(x, *approx)
    return {"n": len(x), "margin_corr": float(np.corrcoef(m, ma)[0, 1]), "margin_max_abs_err": float(err.max()),
            "margin_mean_abs_err": float(err.mean()), "margin_sign_agree": float(np.mean((m > 0) == (ma > 0))),
            "group_argmax_agree": float(np.mean(g.argmax(1) == ga.argmax(1))),
            "margin_positive": float(np.mean(ma > 0)), "margin_positive_full": float(np.mean(m > 0)),
            "dog_prob_max_abs_err": float(np.abs(g[:, 0] - ga[:, 0]).max())}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "data")
    ap.add_argument("--columns-only", action="store_true", help="Only the column subsets; keep the JSON's low-rank rows")
    args = ap.parse_args()
    kernel, bias = tp.read_top(tp.find_top())
    sets, other = embeddings(args.data)
    pets = sets["pets/train"]
    # Held-out species: fitted on cats and dogs only, checked on pets' "other" images (never fitted on).
    sets["unseen: pets other"] = np.concatenate([sets[k][other[k]] for k in ("pets/train", "pets/val")])
    scale = float(np.abs(tp.dog_margin(sets["pets/val"], kernel, bias)).mean())
    out = HERE / "prior_size.json"
    results = {"mean_abs_margin_pets_val": scale, "methods": {}}
    if args.columns_only and out.is_file():
        results["methods"] = json.loads(out.read_text())["methods"]
    results["columns"] = columns(kernel, bias, sets, pets, other["pets/train"])
    if args.columns_only:
        out.write_text(json.dumps(results, indent=1))
        print(f"wrote {out}")
        return
    methods = {"svd (weights only)": (None, 0.0), "pets-weighted": (pets, 0.0), "pets-weighted ridge 0.1": (pets, 0.1),
               "cats+dogs-weighted": (pets[~other["pets/train"]], 0.0),
               "cats+dogs-weighted ridge 0.1": (pets[~other["pets/train"]], 0.1)}
    for method, (x, ridge) in methods.items():
        for r in RANKS:
            u, v, b = tp.factorise(kernel, bias, r, x, ridge)
            approx = (u @ v, b)
            row = {"rank": r, "weights": int(u.size + v.size),
                   **{k: fidelity(x, (kernel, bias), approx) for k, x in sets.items()}}
            results["methods"].setdefault(method, []).append(row)
            print(f"{method:30s} r={r:3d}", "  ".join(
                f"{k}: corr {f['margin_corr']:.3f} max {f['margin_max_abs_err']:.2f} mean {f['margin_mean_abs_err']:.2f} "
                f"sign {f['margin_sign_agree']:.3f} grp {f['group_argmax_agree']:.3f}"
                for k, f in ((k, row[k]) for k in sets)), flush=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"wrote {out}")


def columns(kernel, bias, sets, pets, pets_other):
    """Rows for each (dog, rest) column count: chosen on pets/train, and on its cats and dogs only."""
    rows = []
    unseen = {"unseen: pets other": sets["unseen: pets other"]}
    for n_dog, n_rest in COLUMNS:
        cols = tp.select_columns(kernel, bias, pets, n_dog, n_rest)
        held = tp.select_columns(kernel, bias, pets[~pets_other], n_dog, n_rest)
        row = {"dog_columns": n_dog, "rest_columns": n_rest, "weights": int(kernel.shape[0] * (n_dog + n_rest)),
               "approx_int8_bytes": (n_dog + n_rest) * COLUMN_BYTES,
               **{k: fidelity(x, (kernel, bias), (cols, bias)) for k, x in sets.items() if k not in unseen},
               **{f"{k} (chosen on cats+dogs)": fidelity(x, (kernel, bias), (held, bias)) for k, x in unseen.items()}}
        rows.append(row)
        print(f"columns {n_dog:3d}+{n_rest:3d}", "  ".join(
            f"{k}: corr {f['margin_corr']:.3f} mean {f['margin_mean_abs_err']:.2f} sign {f['margin_sign_agree']:.3f} "
            f"+ {f['margin_positive']:.3f}/{f['margin_positive_full']:.3f}"
            for k, f in row.items() if isinstance(f, dict)), flush=True)
    return rows


if __name__ == "__main__":
    main()
