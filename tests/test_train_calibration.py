"""Temperature scaling, operating points and the ImageNet prior, on synthetic scores (fast, no data)."""

import numpy as np
import pytest

from tl.train import calibration as cal


def synthetic_logits(n=600, classes=3, sharpness=4.0, seed=0):
    """Logits whose true temperature is known: labels drawn from softmax(z), logits given as z * sharpness."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2.0, (n, classes))
    p = cal.softmax(z)
    y = np.array([rng.choice(classes, p=row) for row in p])
    return z * sharpness, y


def test_temperature_recovers_over_confidence():
    logits, y = synthetic_logits(sharpness=4.0)
    t = cal.fit_temperature(logits, y)
    assert 3.0 < t < 5.3  # the logits are 4x too sharp
    assert cal.nll(logits, y, t) < cal.nll(logits, y, 1.0)


def test_temperature_recovers_under_confidence_and_keeps_the_top_class():
    logits, y = synthetic_logits(sharpness=0.5, seed=1)
    t = cal.fit_temperature(logits, y)
    assert 0.35 < t < 0.7
    assert np.array_equal(cal.softmax(logits / t).argmax(1), logits.argmax(1))


def test_calibrate_works_on_probabilities_and_lowers_nll_and_ece():
    logits, y = synthetic_logits(sharpness=0.4, seed=2)
    t, record = cal.calibrate(cal.softmax(logits), y)
    assert record["nll_after"] < record["nll_before"]
    assert record["ece_after"] < record["ece_before"]
    assert record["temperature"] == pytest.approx(t, abs=1e-4)


def test_no_held_out_images_means_no_scaling():
    assert cal.fit_temperature(np.zeros((0, 3)), np.zeros(0, int)) == 1.0


def test_threshold_lets_through_at_most_the_target_share():
    rng = np.random.default_rng(0)
    neg = rng.uniform(0, 0.9, 1000)
    t = cal.threshold_for(neg, target=0.01, floor=0.0)
    assert np.mean(neg >= t) <= 0.01
    assert np.mean(neg >= t - 0.01) > 0.005  # and no stricter than needed


def test_threshold_respects_floor_and_ceiling():
    assert cal.threshold_for([0.1, 0.2, 0.3], target=0.01, floor=0.5) == 0.5
    assert cal.threshold_for([0.999, 0.9999], target=0.0, floor=0.5) == cal.CEILING
    assert cal.threshold_for([], target=0.01) == cal.DEFAULT_FLOOR


def test_threshold_with_few_negatives_sits_above_the_highest():
    t = cal.threshold_for([0.2, 0.7, 0.65], target=0.01, floor=0.5)
    assert 0.7 < t < 0.7001


def test_operating_points_per_class_with_recall_and_false_share():
    # dog (1) scores high for dogs; one cat (0) reaches 0.9 for dog; the rest of the others stay low.
    y = np.array([1] * 50 + [0] * 100 + [2] * 100)
    rng = np.random.default_rng(3)
    dog = np.where(y == 1, rng.uniform(0.6, 1.0, len(y)), rng.uniform(0.0, 0.4, len(y)))
    dog[50] = 0.9
    scores = np.stack([(1 - dog) * 0.5, dog, (1 - dog) * 0.5], 1)
    scores[y == 0, 0] += 0.01  # cats' top class is cat when not dog
    ops = cal.operating_points(scores, y, ["cat", "dog", "other"], target=0.01)
    assert ops["target"] == 0.01 and set(ops["thresholds"]) == {"cat", "dog", "other"}
    pc = ops["per_class"]["dog"]
    assert pc["negatives"] == 200 and pc["false_share"] <= 0.01
    # 2 of 200 negatives may reach it: the 0.9 cat is allowed, so the threshold sits above the next one.
    assert ops["thresholds"]["dog"] <= 0.9
    assert pc["recall"] == pytest.approx(np.mean(scores[y == 1, 1] >= ops["thresholds"]["dog"]), abs=1e-4)
    strict = cal.operating_points(scores, y, ["cat", "dog", "other"], target=0.0)
    assert strict["thresholds"]["dog"] > 0.9 and strict["per_class"]["dog"]["false_share"] == 0.0


def test_describe_names_temperature_and_thresholds():
    logits, y = synthetic_logits(n=60)
    _, record = cal.calibrate(cal.softmax(logits), y)
    ops = cal.operating_points(cal.softmax(logits), y, ["a", "b", "c"])
    line = cal.describe(record, ops)
    assert "temperature" in line and "a " in line and "1 %" in line


def test_prior_branch_matches_numpy_and_temperature_folds_into_every_logit_path():
    from tl.train.head import HeadConfig, build_head, fold_temperature
    from tl.train.prior import dog_margin, group_matrix, prior_classes

    rng = np.random.default_rng(0)
    kernel, bias = rng.normal(0, 0.3, (16, 1000)).astype(np.float32), rng.normal(0, 0.1, 1000).astype(np.float32)
    x = rng.normal(0, 1, (8, 16)).astype(np.float32)
    assert prior_classes(["cat", "Dogs", "other"]) == [1]
    assert group_matrix().sum(1).tolist() == [1.0] * 1000  # every ImageNet class in exactly one group
    head = build_head(16, 3, HeadConfig(prior_scale=0.5, dropout=0.0), prior=(kernel, bias), prior_dogs=[1])
    logits_layer = head.get_layer("logits")
    logits_layer.set_weights([np.zeros_like(w) for w in logits_layer.get_weights()])
    p = head.predict(x, verbose=0)
    offset = np.zeros((8, 3))
    offset[:, 1] = 0.5 * dog_margin(x, kernel, bias)
    np.testing.assert_allclose(p, cal.softmax(offset), atol=1e-4)
    fold_temperature(head, 2.0)
    np.testing.assert_allclose(head.predict(x, verbose=0), cal.softmax(offset / 2.0), atol=1e-4)


@pytest.mark.parametrize("hidden", [0, 8])
def test_head_with_prior_trains_its_own_path_on_precomputed_offsets(hidden):
    from tl.train.head import HeadConfig, build_head, fitted_part, train_head

    rng = np.random.default_rng(1)
    kernel, bias = rng.normal(0, 0.3, (16, 1000)).astype(np.float32), rng.normal(0, 0.1, 1000).astype(np.float32)
    x = rng.normal(0, 1, (96, 16)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 1)
    cfg = HeadConfig(prior_scale=0.5, hidden=hidden, epochs=3, patience=3)
    head = build_head(16, 3, cfg, prior=(kernel, bias), prior_dogs=[1])
    frozen = [w.copy() for w in head.get_layer("imagenet_dog").get_weights()]
    model, (xs, offs), _ = fitted_part(head, x, x[:8])
    assert model is not head and xs is x and offs.shape == (96, 3)
    np.testing.assert_allclose(offs[:, [0, 2]], 0.0)  # only the dog class gets the margin
    before = head.get_layer("logits").get_weights()[0].copy()
    history = train_head(head, x, y, x[:32], y[:32], cfg)
    assert len(history["loss"]) == 3 and "val_loss" in history
    assert not np.allclose(head.get_layer("logits").get_weights()[0], before)  # the head's own layer was trained
    np.testing.assert_array_equal(head.get_layer("imagenet_dog").get_weights()[0], frozen[0])  # the prior was not
    # The fitted model and the head are one function of the embedding.
    np.testing.assert_allclose(model.predict((x, offs), verbose=0), head.predict(x, verbose=0), atol=1e-5)


def test_head_without_prior_is_fitted_as_it_is():
    from tl.train.head import HeadConfig, build_head, fitted_part

    head = build_head(16, 3, HeadConfig())
    x = np.zeros((4, 16), np.float32)
    assert fitted_part(head, x, x) == (head, x, x)
