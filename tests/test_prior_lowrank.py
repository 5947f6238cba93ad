"""The ImageNet prior's low-rank form (tl.train.prior.factorise, Factors): exactness, optimality, Keras twin."""

import numpy as np
import pytest

from tests.support import prior as support
from tl.train import prior as tp


def _top(d=24, k=1000, seed=0):
    return support.top(d, k, seed, std=0.1)


def _features(n=200, d=24, seed=1):
    return support.features(n, d, seed)


def test_full_rank_is_exact():
    kernel, bias = _top()
    u, v, b = tp.factorise(kernel, bias, kernel.shape[0])
    np.testing.assert_allclose(u @ v, kernel, atol=1e-5)
    np.testing.assert_array_equal(b, bias)


def test_data_fit_beats_weights_only_on_its_features():
    kernel, bias = _top()
    x = _features()
    err = {}
    for name, fit in (("svd", None), ("data", x)):
        u, v, b = tp.factorise(kernel, bias, 5, fit)  # 4 directions + the mean
        err[name] = np.abs(tp.dog_margin(x, tp.Factors(u, v), b) - tp.dog_margin(x, kernel, bias)).mean()
    assert err["data"] < 0.5 * err["svd"], err


def test_load_prior_factorises_only_with_features(tmp_path, monkeypatch):
    kernel, bias = _top()
    backbone, top = support.fake_top(tp, monkeypatch, tmp_path, kernel, bias)
    full = tp.load_prior(backbone, 24, top, rank=4)
    assert isinstance(full[0], np.ndarray)
    low = tp.load_prior(backbone, 24, top, x=_features(), rank=4)
    assert isinstance(low[0], tp.Factors) and low[0].u.shape == (24, 4) and low[0].v.shape == (4, 1000)


@pytest.mark.slow
def test_keras_branch_matches_numpy_margin():
    keras = pytest.importorskip("keras")
    kernel, bias = _top()
    x = _features(16).astype(np.float32)
    u, v, b = tp.factorise(kernel, bias, 4, x)
    inp = keras.Input((24,))
    model = keras.Model(inp, tp.prior_branch(inp, tp.Factors(u, v), b, 0.5, 3, [1]))
    out = model.predict(x, verbose=0)
    np.testing.assert_allclose(out[:, 1], 0.5 * tp.dog_margin(x, tp.Factors(u, v), b), rtol=1e-4, atol=1e-4)
    assert np.all(out[:, [0, 2]] == 0)
    assert "imagenet_basis" in [layer.name for layer in model.layers]
