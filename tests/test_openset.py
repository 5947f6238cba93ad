"""Open-set maths on synthetic embeddings: prototypes, held-out radii, the device's check, the policy's veto."""

import numpy as np
import pytest

from tl.device.door.policy import DoorPolicy, make_policy_config
from tl.device.errors import ConfigError, ModelError
from tl.device.recognition.openset import (
    DEFAULT_QUANTILE,
    QUANTILES,
    SOFTMAX,
    OpenSet,
    OpenSetStats,
    class_distances,
    normalise,
)
from tl.device.recognition.recognizer import Verdict
from tl.train import openset as train_openset

DIM = 32


def clusters(n_per_class, modes, seed=0, spread=0.15, draw=0):
    """Unit embeddings of 3 classes; class c has `modes[c]` well-separated modes (breeds, poses...).

    `seed` places the modes; `draw` picks the points around them (a new draw: held-out images).
    """
    rng, noise = np.random.default_rng(seed), np.random.default_rng(1000 + draw)
    xs, ys = [], []
    for c, m in enumerate(modes):
        centres = normalise(rng.normal(size=(m, DIM)))
        for i in range(n_per_class):
            xs.append(centres[i % m] + spread * noise.normal(size=DIM) / np.sqrt(DIM))
            ys.append(c)
    return normalise(np.array(xs)), np.array(ys)


@pytest.fixture(scope="module")
def stats():
    x, y = clusters(120, modes=(1, 3, 2))
    val_scores = np.random.default_rng(1).dirichlet([8, 1, 1], size=50)
    return train_openset.compute_stats(x, y, ["cat", "dog", "other"], val_scores=val_scores)


def test_kmeans_finds_the_modes_of_a_class():
    x, y = clusters(90, modes=(3, 1, 1), seed=4, spread=0.05)
    centres = train_openset.spherical_kmeans(x[y == 0], 3, seed=0)
    # Every point is within a small angle of one centre: the three modes, not averages of them.
    assert (x[y == 0] @ centres.T).max(1).min() > 0.99
    assert np.allclose(np.linalg.norm(centres, axis=1), 1, atol=1e-5)


def test_prototype_count_grows_with_the_class_and_is_capped():
    assert [train_openset.prototype_count(n) for n in (1, 9, 10, 45, 400)] == [1, 1, 1, 4, 8]


def test_held_out_distances_are_larger_than_fitted_ones():
    x, y = clusters(60, modes=(2, 2, 2), seed=2)
    held = train_openset.held_out_distances(x, y, 3)
    protos, owner = train_openset.class_prototypes(x, y, 3)
    fitted = np.array([class_distances(e, protos, owner, 3)[c] for e, c in zip(x, y)])
    assert np.isfinite(held).all()
    assert held.mean() > fitted.mean()  # why the radii come from held-out images


def test_radii_grow_with_the_quantile_and_follow_each_class(stats):
    assert stats.radii.shape == (len(QUANTILES), 3)
    assert np.all(np.diff(stats.radii, axis=0) >= 0)
    assert stats.meta["counts"] == {"cat": 120, "dog": 120, "other": 120}
    assert [int(np.sum(stats.owner == c)) for c in range(3)] == [8, 8, 8]
    # Interpolation between stored quantiles, and refusal outside them.
    mid = stats.radius(0.985)
    assert np.all(stats.radius(0.98) <= mid) and np.all(mid <= stats.radius(0.99))
    with pytest.raises(ConfigError, match="0.9..1"):
        stats.radius(0.5)


def test_stats_survive_the_npz_round_trip(stats):
    back = OpenSetStats.from_bytes(stats.to_bytes())
    assert back.labels == stats.labels and back.meta["default_quantile"] == DEFAULT_QUANTILE
    assert np.allclose(back.prototypes, stats.prototypes, atol=2e-3)  # stored as float16
    assert np.array_equal(back.radii, stats.radii) and np.array_equal(back.owner, stats.owner)
    with pytest.raises(ModelError, match="damaged"):
        OpenSetStats.from_bytes(b"not an npz")


def test_check_accepts_held_out_class_members_and_rejects_what_is_far_from_every_class(stats):
    fresh, fresh_y = clusters(120, modes=(1, 3, 2), draw=1)  # the training modes, new images
    openset = OpenSet(stats)
    rejected = [openset.check(np.eye(3)[c], e).unknown for e, c in zip(fresh, fresh_y)]
    assert np.mean(rejected) < 0.06  # about 1 - 0.98 of them, by construction of the radii
    rng = np.random.default_rng(9)
    strangers = normalise(rng.normal(size=(50, DIM)))
    unknown = [openset.check(np.eye(3)[i % 3], e) for i, e in enumerate(strangers)]
    assert all(c.unknown for c in unknown)
    assert all(c.value > c.limit for c in unknown)


def test_check_uses_the_predicted_class_radius(stats):
    openset = OpenSet(stats)
    cat_proto = stats.prototypes[stats.owner == 0][0]
    assert not openset.check(np.array([0.9, 0.05, 0.05]), cat_proto).unknown
    # The same embedding called "dog" by the classifier is far from every dog prototype: unknown.
    assert openset.check(np.array([0.05, 0.9, 0.05]), cat_proto).unknown


def test_shift_widens_the_radii(stats):
    plain, shifted = OpenSet(stats), OpenSet(stats, shift=0.05)
    assert np.allclose(shifted.limits, plain.limits + 0.05)


def test_max_softmax_fallback_needs_no_embedding(stats):
    openset = OpenSet(stats, use_embedding=False)
    assert openset.method == SOFTMAX and 0 < openset.limits < 1
    assert openset.check(np.array([0.34, 0.33, 0.33])).unknown
    assert not openset.check(np.array([0.98, 0.01, 0.01])).unknown
    assert "max-softmax" in openset.describe()


def test_fallback_refused_without_softmax_floors(stats):
    blind = OpenSetStats(stats.labels, stats.prototypes, stats.owner, stats.quantiles, stats.radii,
                         np.full(len(QUANTILES), np.nan, np.float32))
    with pytest.raises(ModelError, match="no-openset"):
        OpenSet(blind, use_embedding=False)


def test_validation_check_reports_the_cost(stats):
    x, y = clusters(30, modes=(1, 3, 2), draw=5)
    report = train_openset.validation_check(stats, x, y, np.eye(3)[y])
    assert report["images"] == 90 and 0 <= report["rejected"] < 0.1
    assert report["accuracy"] == 1.0 and report["accuracy_with_rejection"] == 1.0 - report["rejected"]


def policy():
    return DoorPolicy(make_policy_config(["background", "dog", "raccoon"], allow=["dog"], threshold=0.7,
                                         votes=(3, 5), open_seconds=2, lockout_seconds=30))


DOG, RACCOON = np.array([0.0, 0.95, 0.05]), np.array([0.0, 0.05, 0.95])
UNKNOWN, STRANGER, KNOWN = Verdict(True, True, "far"), Verdict(False, False, "not rex"), Verdict(False, True, "")


def test_unknown_frames_never_open_the_door():
    p = policy()
    decisions = [d for i in range(20) for d in p.update(i * 0.1, DOG, UNKNOWN)]
    assert decisions == [] and p.state == "closed"
    # The same scores, known, open it on the third frame.
    assert [d.event for i in range(3) for d in p.update(3 + i * 0.1, DOG, KNOWN)] == ["door_open"]


def test_unknown_frames_do_not_lock_the_door_either():
    p = policy()
    assert [d for i in range(5) for d in p.update(i * 0.1, RACCOON, UNKNOWN)] == []
    assert p.state == "closed"
    assert [d.event for d in p.update(1.0, RACCOON, KNOWN)] == ["denied"]


def test_an_unidentified_dog_cannot_open_but_a_raccoon_still_locks():
    p = policy()
    assert [d for i in range(10) for d in p.update(i * 0.1, DOG, STRANGER)] == []
    assert [d.event for d in p.update(1.5, RACCOON, STRANGER)] == ["denied"]


def test_unknown_frames_while_open_let_the_door_close_on_time():
    p = policy()
    events = [d.event for i in range(3) for d in p.update(i * 0.1, DOG)]
    events += [d.event for i in range(40) for d in p.update(0.3 + i * 0.1, DOG, UNKNOWN)]
    assert events == ["door_open", "door_close"]


def test_door_subset_caps_each_class_evenly():
    y = np.array([0] * 5 + [1] * 12 + [2] * 3)
    sub = train_openset.door_subset(y, cap=4)
    assert np.bincount(y[sub]).tolist() == [4, 4, 3]
    ones = sub[y[sub] == 1]
    assert ones[0] == 5 and ones[-1] == 16  # spread over the class, first and last included
    assert np.array_equal(train_openset.door_subset(y, cap=20), np.arange(20))


def test_radii_use_only_the_images_with_door_views():
    x, y = clusters(40, modes=(1, 2, 1), seed=3)
    view = normalise(x + 0.3 * np.random.default_rng(5).normal(size=x.shape))
    sub = train_openset.door_subset(y, cap=15)
    masked = np.full_like(view, np.nan)
    masked[sub] = view[sub]
    got = train_openset.compute_stats(x, y, ["cat", "dog", "other"], views=[masked]).radii
    # Expected: the held-out distances of the subset only, originals and views alike (an even mix of views).
    d = train_openset.held_out_distances(x, y, 3, views=[view]).reshape(2, -1)[:, sub].reshape(-1)
    want = train_openset.class_radii(d, np.tile(y[sub], 2), 3)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    full = train_openset.compute_stats(x, y, ["cat", "dog", "other"], views=[view]).radii
    assert not np.allclose(got, full)  # the mask made a difference
