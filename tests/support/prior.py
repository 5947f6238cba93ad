"""Synthetic ImageNet tops and features for the prior's tests (tl.train.prior)."""

import numpy as np


def top(d=24, k=1000, seed=0, std=0.1):
    """A (d, k) kernel and (k,) bias, like a 1000-class top on d features."""
    rng = np.random.default_rng(seed)
    return rng.normal(0, std, (d, k)).astype(np.float32), rng.normal(0, 0.1, k).astype(np.float32)


def features(n=200, d=24, seed=1):
    """Non-negative features that mostly live in 4 directions, like pooled ReLU6 embeddings of one domain."""
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(0, 1, (n, 4)) @ rng.normal(0, 1, (4, d)) + 0.05 * rng.normal(0, 1, (n, d)) + 1, 0, 6)


def fake_top(prior_module, monkeypatch, tmp_path, kernel, bias):
    """Makes `load_prior` read (kernel, bias) from a stand-in file; returns (MobileNetV2-like backbone, path)."""
    monkeypatch.setattr(prior_module, "read_top", lambda path: (kernel, bias))
    path = tmp_path / "top.h5"
    path.write_bytes(b"")
    return type("B", (), {"name": "mobilenet_v2", "alpha": 1.0})(), path
