"""The ImageNet prior's column form (tl.train.prior.select_columns, Columns): choice, numpy reference, Keras twin."""

import numpy as np
import pytest

from tests.support import prior as support
from tl.train import prior as tp

DOG = np.arange(*tp.GROUPS["dog"])


def _top(d=24, k=1000, seed=0):
    return support.top(d, k, seed, std=0.3)


def _features(n=120, d=24, seed=1):
    return support.features(n, d, seed)


def _reference(x, kernel, bias, dog, rest):
    """The margin over the kept columns, written out by hand."""
    z = np.asarray(x, np.float64) @ kernel + bias
    return z[:, dog].max(1) - z[:, rest].max(1)


def test_columns_are_counted_sorted_and_in_their_group():
    kernel, bias = _top()
    cols = tp.select_columns(kernel, bias, _features(), 7, 11)
    assert len(cols.dog) == 7 and len(cols.rest) == 11
    assert np.all(np.diff(cols.dog) > 0) and np.all(np.diff(cols.rest) > 0)
    assert np.isin(cols.dog, DOG).all() and not np.isin(cols.rest, DOG).any()


def test_margin_equals_numpy_reference_and_all_columns_are_exact():
    kernel, bias = _top()
    x = _features()
    cols = tp.select_columns(kernel, bias, x, 5, 9)
    np.testing.assert_allclose(tp.dog_margin(x, cols, bias), _reference(x, kernel, bias, cols.dog, cols.rest),
                               rtol=1e-10)
    every = tp.select_columns(kernel, bias, x, 1000, 1000)
    assert len(every.dog) == len(DOG) and len(every.rest) == 1000 - len(DOG)
    np.testing.assert_allclose(tp.dog_margin(x, every, bias), tp.dog_margin(x, kernel, bias), rtol=1e-10)


def test_greedy_cover_beats_the_first_columns():
    kernel, bias = _top()
    x = _features()
    full = tp.dog_margin(x, kernel, bias)
    chosen = tp.select_columns(kernel, bias, x, 10, 20)
    naive = tp.Columns(kernel, DOG[:10], np.arange(20))
    err = {name: np.abs(tp.dog_margin(x, c, bias) - full).mean() for name, c in (("chosen", chosen), ("naive", naive))}
    assert err["chosen"] < 0.5 * err["naive"], err


def test_load_prior_makes_columns_on_request_and_describe_records_them(tmp_path, monkeypatch):
    kernel, bias = _top()
    backbone, top = support.fake_top(tp, monkeypatch, tmp_path, kernel, bias)
    assert isinstance(tp.load_prior(backbone, 24, top)[0], np.ndarray)  # no features: the full top
    assert isinstance(tp.load_prior(backbone, 24, top, x=_features())[0], np.ndarray)  # the default: full
    cols, _, _ = tp.load_prior(backbone, 24, top, x=_features(), columns=tp.SMALL_COLUMNS)
    assert isinstance(cols, tp.Columns)
    record = tp.describe(cols)
    assert record["form"] == "columns"
    assert (len(record["dog_columns"]), len(record["rest_columns"])) == tp.SMALL_COLUMNS
    assert tp.describe(kernel) == {"form": "full", "rank": None}


@pytest.mark.slow
def test_keras_branch_carries_only_the_columns_and_matches_numpy():
    keras = pytest.importorskip("keras")
    kernel, bias = _top()
    x = _features(16).astype(np.float32)
    cols = tp.select_columns(kernel, bias, _features(), 6, 8)
    inp = keras.Input((24,))
    model = keras.Model(inp, tp.prior_branch(inp, cols, bias, 0.5, 3, [1]))
    out = model.predict(x, verbose=0)
    np.testing.assert_allclose(out[:, 1], 0.5 * _reference(x, kernel, bias, cols.dog, cols.rest), rtol=1e-4, atol=1e-4)
    assert np.all(out[:, [0, 2]] == 0)
    shapes = {layer.name: layer.get_weights()[0].shape for layer in model.layers if layer.name.startswith("imagenet_")
              and layer.get_weights()}
    assert shapes["imagenet_dog"] == (24, 6) and shapes["imagenet_rest"] == (24, 8)


@pytest.mark.parametrize("value, message", [("45", "give two counts"), ("0,65", "keep 1-118"), ("45,900", "882 other")])
def test_prior_columns_option_refuses_bad_counts(value, message, tmp_path):
    from click.testing import CliRunner

    from tl.train.cli import main

    (tmp_path / "d" / "a").mkdir(parents=True)
    result = CliRunner().invoke(main, [str(tmp_path / "d"), "--out", str(tmp_path / "o"), "--prior-columns", value])
    assert result.exit_code == 2 and message in result.output, result.output


def test_prior_columns_option_reaches_the_config():
    from tl.train.cli import _columns

    assert _columns("45,65") == (45, 65) and _columns(None) is None
