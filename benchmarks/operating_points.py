"""How much the dog operating point moves with the training seed: pets/val alone vs pets/val + out-of-fold pets/train.

For each seed, tl-train's default head (float, on cached embeddings, ImageNet dog margin x0.5) is trained on
pets/train (orig+flip) with pets/val for early stopping and temperature; the dog threshold is chosen (1 % of
non-dogs) on pets/val alone, as tl-train does, and on pets/val plus 5-fold out-of-fold scores of pets/train.
Shift's single-photo dog recall / non-dog->dog at each threshold is printed beside it: reported, never used
to choose.

Usage: python benchmarks/operating_points.py [--data ../shared/data] [--seeds 4] [--prior-columns 45,65]
(--prior-columns: the ImageNet prior's column subset chosen on pets/train orig+flip, as tl-train --prior-columns)
"""

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

FOLDS = 5


def fold_ids(y, seed):
    """Stratified fold index of every sample."""
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), int)
    for c in np.unique(y):
        idx = rng.permutation(np.where(y == c)[0])
        fold[idx] = np.arange(len(idx)) % FOLDS
    return fold


def one_seed(seed, train, val, shift, prior):
    """Thresholds from pets/val alone and with out-of-fold pets/train; shift numbers at each; timings."""
    import generalisation as G
    import keras

    from tl.train import calibration as cal

    (tv, ty), (vx, vy), (sx, sy) = train, val, shift
    keras.utils.set_random_seed(seed)
    t0 = time.perf_counter()
    head = G.fit_head(np.concatenate([tv["orig"], tv["flip"]]), np.tile(ty, 2), vx, vy, 0.5, prior, seed)
    raw_val = head.predict(vx, verbose=0)
    temperature, _ = cal.calibrate(raw_val, vy)

    def calibrated(raw):
        return cal.softmax(cal.log_scores(raw) / temperature)

    s_val, s_shift = calibrated(raw_val), calibrated(head.predict(sx, verbose=0))
    t1 = time.perf_counter()
    fold, oof = fold_ids(ty, seed), np.zeros((len(ty), 3))
    for k in range(FOLDS):
        tr, te = fold != k, fold == k
        h = G.fit_head(np.concatenate([tv["orig"][tr], tv["flip"][tr]]), np.tile(ty[tr], 2), vx, vy, 0.5, prior, seed)
        oof[te] = h.predict(tv["orig"][te], verbose=0)
    t2 = time.perf_counter()
    out = {"seed": seed, "head_s": round(t1 - t0, 1), "fold_heads_s": round(t2 - t1, 1)}
    for name, scores, y in (("val", s_val, vy), ("val+oof", np.concatenate([s_val, calibrated(oof)]),
                                                 np.concatenate([vy, ty]))):
        th = cal.operating_points(scores, y, G.CLASSES)["thresholds"]
        recall, false = G.at_op(s_shift, sy, G.DOG, [th[c] for c in G.CLASSES])
        out[name] = {"dog_threshold": th["dog"], "shift_dog_recall": round(recall, 3), "shift_false_dog": round(false, 3)}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data"))
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--prior-columns", metavar="DOG,OTHER", help="the prior's column subset instead of the whole top")
    args = ap.parse_args()
    import generalisation as G

    ctx, prior = G.study_context()
    data = Path(args.data)
    tv, ty, _ = G.embed(data / "pets/train", ("orig", "flip"), ctx)
    vv, vy, _ = G.embed(data / "pets/val", ("orig",), ctx)
    sv, sy, _ = G.embed(data / "shift", ("orig",), ctx)
    if args.prior_columns:
        from tl.train.prior import select_columns

        dog, other = (int(v) for v in args.prior_columns.split(","))
        prior = (select_columns(*prior, np.concatenate([tv["orig"], tv["flip"]]), dog, other), prior[1])
    for seed in range(args.seeds):
        print(one_seed(seed, (tv, ty), (vv["orig"], vy), (sv["orig"], sy), prior), flush=True)


if __name__ == "__main__":
    main()
