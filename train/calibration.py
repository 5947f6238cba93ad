"""Scores that mean something: temperature scaling and per-class operating points from held-out images.

Temperature scaling divides the logits by one number T, fitted to minimise the negative log-likelihood
of held-out labels; T > 1 softens an over-confident head, T < 1 sharpens an under-confident one. It
never changes the top class. tl-train folds 1/T into the head's logit layers (tl.train.head.fold_temperature), so every runtime
(Keras, every TFLite variant) outputs the calibrated scores.

An operating point is a class's threshold: the lowest score at which at most `target` of held-out
images of the *other* classes reach it (default 1 %), never below `floor` (a score under 0.5 does
not even make a class the sure top one). The door opens for an allowed class at its threshold.
"""

import numpy as np

DEFAULT_TARGET = 0.01  # at most 1 % of held-out images of other classes reach a class's threshold
DEFAULT_FLOOR = 0.5
CEILING = 0.99  # a threshold above this would make the class practically unreachable
T_RANGE = (0.05, 20.0)


def softmax(logits):
    """Row-wise softmax of (n, C) logits."""
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def log_scores(scores):
    """Logits (up to a per-row constant, which softmax ignores) of (n, C) probabilities."""
    return np.log(np.clip(np.asarray(scores, np.float64), 1e-12, 1.0))


def nll(logits, y, temperature=1.0):
    """Mean negative log-likelihood of labels `y` under softmax(logits / temperature)."""
    z = np.asarray(logits, np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-np.mean(logp[np.arange(len(y)), np.asarray(y)]))


def fit_temperature(logits, y, bounds=T_RANGE):
    """The temperature minimising held-out NLL (golden-section search on log T; NLL is unimodal in it).

    Returns:
      T (1.0 when there are no held-out images).
    """
    if not len(y):
        return 1.0
    lo, hi = np.log(bounds[0]), np.log(bounds[1])
    ratio = (np.sqrt(5.0) - 1.0) / 2.0
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = nll(logits, y, np.exp(a)), nll(logits, y, np.exp(b))
    for _ in range(60):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = nll(logits, y, np.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = nll(logits, y, np.exp(b))
    return float(np.exp((lo + hi) / 2.0))


def expected_calibration_error(scores, y, bins=10):
    """ECE of the top score: the mean |accuracy - confidence| over equal-width confidence bins, weighted."""
    scores = np.asarray(scores, np.float64)
    if not len(scores):
        return float("nan")
    conf, pred = scores.max(1), scores.argmax(1)
    correct = pred == np.asarray(y)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    return float(sum(abs(correct[which == b].mean() - conf[which == b].mean()) * np.mean(which == b)
                     for b in range(bins) if np.any(which == b)))


def threshold_for(negatives, target=DEFAULT_TARGET, floor=DEFAULT_FLOOR, ceiling=CEILING):
    """The lowest threshold that at most `target` of the `negatives` scores reach (score >= threshold).

    With n negatives, floor(target * n) of them may reach it: the threshold sits just above the next
    highest one. Clipped to [floor, ceiling].
    """
    neg = np.sort(np.asarray(negatives, np.float64))[::-1]
    allowed = int(np.floor(target * len(neg) + 1e-9))
    if allowed >= len(neg):
        return float(floor)
    t = float(np.nextafter(neg[allowed], np.inf))
    return float(np.clip(t, floor, ceiling))


def operating_points(scores, y, labels, target=DEFAULT_TARGET, floor=DEFAULT_FLOOR):
    """Each class's threshold from held-out scores, and what it costs there.

    Args:
      scores: (n, C) calibrated held-out scores.
      y: (n,) true class indices.
      labels: class names.
      target: largest share of other classes' held-out images allowed to reach a class's threshold.
      floor: lowest threshold given.

    Returns:
      {"target", "floor", "images", "thresholds": {class: t}, "per_class": {class: {"recall", "false_share",
      "negatives"}}}: recall is the share of the class's images that are its top class at or above t;
      false_share the share of other classes' images whose score for it reaches t.
    """
    scores, y = np.asarray(scores, np.float64), np.asarray(y)
    top = scores.argmax(1) if len(scores) else np.zeros(0, int)
    thresholds, per_class = {}, {}
    for c, name in enumerate(labels):
        neg = scores[y != c, c]
        t = threshold_for(neg, target, floor)
        t = min(float(np.ceil(t * 1e4) / 1e4), 1.0)  # rounded up: a rounded threshold never lets more through
        pos = y == c
        hit = (top == c) & (scores[:, c] >= t)
        thresholds[name] = t
        per_class[name] = {"recall": round(float(hit[pos].mean()), 4) if pos.any() else None,
                           "false_share": round(float(np.mean(neg >= t)), 4) if len(neg) else None,
                           "negatives": int(len(neg))}
    return {"target": target, "floor": floor, "images": int(len(y)), "thresholds": thresholds,
            "per_class": per_class}


def calibrate(val_scores, y_val):
    """Fits the temperature on held-out scores; returns (T, record) with NLL and ECE before and after."""
    logits = log_scores(val_scores)
    t = fit_temperature(logits, y_val)
    after = softmax(logits / t)
    record = {"method": "temperature", "temperature": round(t, 4), "images": int(len(y_val)),
              "nll_before": round(nll(logits, y_val), 4), "nll_after": round(nll(logits, y_val, t), 4),
              "ece_before": round(expected_calibration_error(val_scores, y_val), 4),
              "ece_after": round(expected_calibration_error(after, y_val), 4)}
    return t, record


def describe(record, ops):
    """One line for tl-train's output."""
    th = ", ".join(f"{c} {t:.2f}" for c, t in ops["thresholds"].items())
    return (f"calibration: temperature {record['temperature']:.2f} (held-out NLL {record['nll_before']:.3f} -> "
            f"{record['nll_after']:.3f}); operating points for <= {100 * ops['target']:g} % false: {th}")
