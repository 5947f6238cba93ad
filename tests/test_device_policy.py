"""The door policy on synthetic (timestamp, scores) timelines: pure, no sleeping."""

import numpy as np
import pytest

from tl.device.door.policy import CLOSED, LOCKED, OPEN, DoorPolicy, make_policy_config
from tl.device.errors import ConfigError

LABELS = ["background", "dog", "cat", "raccoon"]
FPS = 10.0


def scores(kind, score=0.95):
    """A softmax-like vector where `kind` has `score` and the rest share what is left."""
    out = np.full(len(LABELS), (1.0 - score) / (len(LABELS) - 1), np.float32)
    out[LABELS.index(kind)] = score
    return out


def play(policy, kinds, start=0.0, fps=FPS):
    """Feeds one frame per kind at `fps`; returns [(ts, event, label, reason)]."""
    out = []
    for i, kind in enumerate(kinds):
        ts = round(start + i / fps, 6)
        item = kind if isinstance(kind, np.ndarray) else scores(kind)
        for d in policy.update(ts, item):
            out.append((ts, d.event, d.label, d.reason))
    return out


def make(**kwargs):
    kwargs.setdefault("allow", ["dog"])
    return DoorPolicy(make_policy_config(LABELS, **kwargs))


def test_defaults_deny_everything_else_and_ignore_background():
    cfg = make().config
    assert cfg.names(cfg.allow) == "dog"
    assert cfg.names(cfg.deny) == "cat, raccoon"
    assert cfg.names(cfg.ignore) == "background"
    assert cfg.votes == 3 and cfg.window == 5


def test_dog_arrives_door_opens_on_third_frame_within_half_a_second():
    policy = make()
    events = play(policy, ["background"] * 10 + ["dog"] * 5)
    assert events == [(1.2, "door_open", "dog", "dog 3/5 >= 0.80")]
    first_dog = 1.0
    assert events[0][0] - first_dog <= 0.5
    assert policy.state == OPEN


def test_dog_stays_door_stays_open_then_closes_after_open_seconds():
    policy = make(open_seconds=2.0)
    events = play(policy, ["dog"] * 30 + ["background"] * 30)
    assert [e[1] for e in events] == ["door_open", "door_close"]
    last_dog = 2.9
    assert events[1][0] == pytest.approx(last_dog + 2.0)
    assert events[1][3] == "no dog for 2 s"
    assert policy.state == CLOSED


def test_flicker_below_k_never_opens():
    policy = make()
    assert play(policy, ["dog", "background", "background", "dog", "background"] * 8) == []


def test_low_scores_do_not_count():
    policy = make()
    assert play(policy, [scores("dog", 0.7)] * 20) == []


def test_raccoon_then_dog_is_locked_out_until_lockout_passes():
    policy = make(lockout_seconds=5.0)
    events = play(policy, ["raccoon"] * 2 + ["dog"] * 80)
    assert events[0][:3] == (0.0, "denied", "raccoon")
    assert "locked 5 s" in events[0][3]
    # The last raccoon frame is at 0.1 s: the lockout ends at 5.1 s and the window is all dog.
    assert events[1][:2] == (5.1, "door_open")
    assert len(events) == 2


def test_raccoon_after_dog_closes_at_once_and_locks():
    policy = make()
    events = play(policy, ["dog"] * 5 + ["raccoon"] + ["dog"] * 10)
    assert [e[1] for e in events] == ["door_open", "door_close", "denied"]
    assert events[1][0] == events[2][0] == 0.5
    assert events[1][2] == "raccoon" and "while open" in events[1][3]
    assert policy.state == LOCKED
    assert policy.locked_for(1.0) == pytest.approx(29.5)


def test_denied_sightings_extend_the_lockout_without_new_events():
    policy = make(lockout_seconds=1.0)
    events = play(policy, ["raccoon", "background"] * 10 + ["dog"] * 20)
    assert [e[1] for e in events] == ["denied", "door_open"]
    # last raccoon at 1.8 s, lockout to 2.8 s; dogs from 2.0 s fill the window by then.
    assert events[1][0] == pytest.approx(2.8)


def test_denied_in_window_blocks_opening_even_with_zero_lockout():
    policy = make(lockout_seconds=0.0)
    events = play(policy, ["dog", "dog", "raccoon", "dog", "dog", "dog", "dog", "dog"])
    assert [e[1] for e in events] == ["denied", "door_open"]
    # The raccoon (frame 2) must leave the 5-frame window first: it does at frame 7.
    assert events[1][0] == pytest.approx(0.7)


def test_confident_cat_on_empty_porch_locks_without_background_class_but_not_when_ignored():
    no_background = make(deny=["cat", "raccoon"], ignore=[])
    assert [e[1] for e in play(no_background, ["cat"] * 3)] == ["denied"]
    policy = make()
    assert play(policy, ["background"] * 50 + ["dog"] * 3) == [(5.2, "door_open", "dog", "dog 3/5 >= 0.80")]


def test_neutral_classes_with_explicit_deny():
    policy = make(deny=["raccoon"])
    assert play(policy, ["cat"] * 10) == []
    assert [e[1] for e in play(policy, ["dog"] * 3, start=1.0)] == ["door_open"]


def test_several_allowed_classes_and_per_class_thresholds():
    policy = make(allow=["dog", "cat"], thresholds={"raccoon": 0.3, "cat": 0.9})
    # raccoon at 0.35 is not the top class but reaches its own low threshold: denied.
    mixed = np.array([0.1, 0.55, 0.0, 0.35], np.float32)
    assert [e[1] for e in play(policy, [mixed])] == ["denied"]
    policy = make(allow=["dog", "cat"], thresholds={"cat": 0.9})
    assert play(policy, [scores("cat", 0.85)] * 10) == []
    events = play(policy, ["cat", "dog", "cat"], start=2.0)
    assert events == [(2.2, "door_open", "cat", "cat 3/5 >= 0.90")]


def test_fault_closes_an_open_door_and_clears_the_window():
    policy = make()
    play(policy, ["dog"] * 3)
    decisions = policy.fault(0.3, "camera lost: unplugged")
    assert [(d.event, d.reason) for d in decisions] == [("door_close", "camera lost: unplugged")]
    assert policy.state == CLOSED
    # The window was cleared: two more dog frames are not enough.
    assert play(policy, ["dog"] * 2, start=0.4) == []
    assert policy.fault(1.0, "stop") == []


def test_fault_keeps_a_lockout():
    policy = make()
    play(policy, ["raccoon"])
    policy.fault(0.5, "camera lost")
    assert policy.state == LOCKED
    assert play(policy, ["dog"] * 10, start=1.0) == []


def test_time_going_backwards_is_clamped():
    policy = make(open_seconds=1.0)
    play(policy, ["dog"] * 3, start=100.0)
    # A clock step back (50 s) must neither stretch the open time by 50 s nor crash.
    events = play(policy, ["background"] * 15, start=50.0)
    assert [e[1] for e in events] == ["door_close"]
    assert events[0][0] == pytest.approx(51.0)  # 1 s after the step, in the source's own time


def test_same_timeline_same_decisions():
    kinds = ["background"] * 5 + ["dog"] * 8 + ["raccoon"] + ["dog"] * 40 + ["cat"] * 3
    assert play(make(), kinds) == play(make(), kinds)


@pytest.mark.parametrize("kwargs, message", [
    ({"allow": ["wolf"]}, "no such class"),
    ({"allow": []}, "no class opens the door"),
    ({"deny": ["dog"]}, "both in --allow and in --deny"),
    ({"thresholds": {"wolf": 0.5}}, "no such class"),
])
def test_invalid_policy_is_refused(kwargs, message):
    # Numbers (thresholds in 0..1, 1 <= K <= N, durations) are checked once, by the config:
    # see tests/test_device_config.py and test_policy_numbers_are_checked_by_the_config below.
    kwargs.setdefault("allow", ["dog"])
    with pytest.raises(ConfigError, match=message):
        make_policy_config(LABELS, **kwargs)


def test_unknown_class_message_lists_the_model_classes():
    with pytest.raises(ConfigError) as e:
        make_policy_config(LABELS, allow=["Dog"])
    assert "background, dog, cat, raccoon" in str(e.value)


@pytest.mark.parametrize("values, message", [
    ({"threshold": 1.5}, "within 0..1"),
    ({"thresholds": {"cat": -0.1}}, "within 0..1"),
    ({"votes": (6, 5)}, "1 <= K <= N"),
    ({"votes": (0, 5)}, "1 <= K <= N"),
    ({"open_seconds": -1}, "0 or more"),
    ({"lockout_seconds": float("inf")}, "finite"),
])
def test_policy_numbers_are_checked_by_the_config(values, message):
    from tl.device.door import config

    with pytest.raises(ConfigError, match=message):
        config.load_config(None, values)
def gate_play(policy, frames, fps=FPS):
    """Feeds frames; None is a gated frame (the motion gate passed it over). Returns [(ts, event)]."""
    out = []
    for i, kind in enumerate(frames):
        ts = round(i / fps, 6)
        decisions = policy.gated(ts) if kind is None else policy.update(ts, scores(kind))
        out += [(ts, d.event) for d in decisions]
    return out


def test_gated_frames_keep_the_vote_evidence_of_a_visitor_standing_still():
    # Two dog frames, then the gate passes frames over, then one more dog frame: 3 of the last 5 classified.
    policy = make()
    assert gate_play(policy, ["background"] * 3 + ["dog", "dog"] + [None] * 8 + ["dog"]) == [(1.3, "door_open")]


def test_gated_frames_close_an_open_door_on_time_and_do_not_reopen_it():
    policy = make(open_seconds=1.0)
    events = gate_play(policy, ["dog"] * 5 + [None] * 30 + ["background"] + [None] * 10)
    assert [e[1] for e in events] == ["door_open", "door_close"]  # not opened again by its own old votes
    assert events[0][0] == 0.2 and 1.4 <= events[1][0] <= 1.5  # 1 s after the last dog (0.4 s), to a frame
    assert policy.state == CLOSED


def test_gated_frames_end_a_lockout_on_time():
    policy = make(lockout_seconds=1.0)
    gate_play(policy, ["raccoon"] + [None] * 5)
    assert policy.state == LOCKED and policy.locked_for(0.5) == pytest.approx(0.5)
    gate_play(policy, [None] * 12)
    assert policy.state == CLOSED


def test_gated_frames_can_repeat_the_last_vote_instead(monkeypatch):
    monkeypatch.setattr(DoorPolicy, "repeat_gated", True)
    policy = make()
    # One dog frame and two gated frames open the door: what "repeat" risks on a single wrong frame.
    assert gate_play(policy, ["background"] * 3 + ["dog", None, None]) == [(0.5, "door_open")]
