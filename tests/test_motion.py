"""Motion gating: idle frames are passed over (counted), visitors and a heartbeat are classified."""

import numpy as np
import pytest

from tests.support.scenes import make_scene, timeline, write_frames
from tl.device.door import config
from tl.device.door.events import read_events
from tl.device.door.motion import BACKGROUNDS, MotionGate, make_gate
from tl.device.errors import ConfigError

FPS = 10.0


SIZE = (240, 320)  # (h, w): small frames keep these tests quick; the gate shrinks frames anyway


def porch_frames(count, seed=0):
    """`count` frames of one empty porch with fresh sensor noise in each (what a still camera sees)."""
    rng = np.random.default_rng(seed)
    still = make_scene("background", rng, size=SIZE).astype(np.float32)
    return [np.clip(still + rng.standard_normal(still.shape, np.float32) * 6, 0, 255).astype(np.uint8)
            for _ in range(count)]


def verdicts(gate, frames, start=0, busy=False):
    return [gate.check(f, (start + i) / FPS, busy=busy) for i, f in enumerate(frames)]


def test_an_empty_porch_is_idle_but_for_the_heartbeat():
    gate = MotionGate(heartbeat_seconds=2.0)
    got = verdicts(gate, porch_frames(100))
    classified = [i for i, v in enumerate(got) if v.classify]
    assert classified == [0, 20, 40, 60, 80]  # the first frame, then one every 2 s
    assert got[0].why == "first" and {got[i].why for i in classified[1:]} == {"heartbeat"}
    assert max(v.changed for v in got[1:]) < 0.001  # noise never counts as change
    assert gate.counts == {"first": 1, "heartbeat": 4, "idle": 95}


def visit(gate, seconds=3.0, seed=1):
    """An empty porch, a dog standing there for `seconds`, the empty porch again; returns the verdicts after it left."""
    rng = np.random.default_rng(seed)
    verdicts(gate, porch_frames(30))
    dog = make_scene("dog", rng, size=SIZE)
    got = verdicts(gate, [dog] * int(seconds * FPS), start=30)
    assert all(v.classify and v.why == "motion" for v in got) and min(v.changed for v in got) > 0.1
    return verdicts(gate, porch_frames(100, seed=3), start=30 + int(seconds * FPS))


def test_the_gate_goes_idle_within_a_few_frames_after_a_visitor_leaves():
    after = visit(MotionGate(heartbeat_seconds=60.0))
    assert sum(v.classify for v in after) <= 2 and not any(v.classify for v in after[2:])


def test_a_running_average_background_sees_the_ghost_of_a_visitor_for_seconds():
    after = visit(MotionGate(heartbeat_seconds=60.0, background="average"))
    assert sum(v.classify for v in after) >= 20  # what the selective background fixes


def test_a_visitor_standing_still_is_still_looked_at():
    rng = np.random.default_rng(2)
    gate = MotionGate(heartbeat_seconds=2.0)
    verdicts(gate, porch_frames(20))
    still_dog = make_scene("dog", rng, size=SIZE)
    got = verdicts(gate, [still_dog] * 300, start=20)
    assert all(v.classify and v.why == "motion" for v in got)  # 30 s: it never fades into the background
    later = verdicts(gate, [still_dog] * 1200, start=320)
    assert not any(v.why == "motion" for v in later[-100:])  # after minutes it does (a parked pram)


def test_open_door_is_watched_only_when_asked():
    watching = MotionGate(heartbeat_seconds=60.0, watch_open=True)
    got = verdicts(watching, porch_frames(20), busy=True)
    assert all(v.classify for v in got) and {v.why for v in got[1:]} == {"busy"}
    default = MotionGate(heartbeat_seconds=60.0)  # an empty porch needs no look while the door is open
    assert not any(v.classify for v in verdicts(default, porch_frames(20), busy=True)[1:])


def test_every_background_model_is_known_and_a_wrong_one_refused():
    for background in BACKGROUNDS:
        gate = MotionGate(background=background)
        assert background in str(gate) and gate.check(porch_frames(1)[0], 0.0).why == "first"
    with pytest.raises(ValueError, match="one of"):
        MotionGate(background="magic")


def test_a_clock_stepping_back_counts_as_a_heartbeat():
    gate = MotionGate(heartbeat_seconds=2.0)
    frames = porch_frames(3)
    assert gate.check(frames[0], 100.0).classify
    assert not gate.check(frames[1], 100.1).classify
    assert gate.check(frames[2], 50.0).why == "heartbeat"


def test_motion_outside_the_roi_is_ignored():
    rng = np.random.default_rng(4)
    frames = porch_frames(12)
    for f in frames[6:]:
        f[:, :100] = rng.integers(0, 255, f[:, :100].shape, dtype=np.uint8)  # the street, left of the door
    inside = MotionGate(heartbeat_seconds=60.0, roi=(160, 0, 160, 240))
    whole = MotionGate(heartbeat_seconds=60.0)
    assert not any(v.classify for v in verdicts(inside, frames)[1:])
    assert all(v.classify for v in verdicts(whole, frames)[6:])


def test_slow_light_drift_is_absorbed():
    frames = porch_frames(300)
    gate = MotionGate(heartbeat_seconds=60.0)
    got = [gate.check(np.clip(f * (1.0 + 0.15 * i / 300), 0, 255).astype(np.uint8), i / FPS)
           for i, f in enumerate(frames)]  # 15 % brighter over 30 s: a cloud passing
    assert sum(v.classify for v in got) == 1


def test_gating_defaults_on_for_cameras_and_off_for_replays():
    cfg = config.load_config(None, {})
    assert cfg.motion is None and make_gate(cfg, live=False) is None
    gate = make_gate(cfg, live=True)
    assert (gate.area, gate.delta, gate.heartbeat_seconds) == (0.01, 20, 2.0)
    assert make_gate(config.load_config(None, {"motion": True}), live=False) is not None
    assert make_gate(config.load_config(None, {"motion": False}), live=True) is None


@pytest.mark.parametrize("key, value, message", [
    ("motion_area", 0, "share of the region"), ("motion_area", 1.5, "share of the region"),
    ("motion_delta", 0, "1..255"), ("motion_delta", 300, "1..255"), ("heartbeat_seconds", 0, "more than 0"),
])
def test_motion_thresholds_are_checked(key, value, message):
    with pytest.raises(ConfigError, match=message):
        config.load_config(None, {key: value})


def options(model, source, tmp_path, name, **extra):
    values = {"model": str(model), "source": str(source), "allow": ("dog",), "door": "mock", "threshold": 0.7,
              "open_seconds": 2.0, "events": str(tmp_path / f"{name}.jsonl"), **extra}
    return config.load_config(None, values)


def test_gating_saves_nine_invokes_in_ten_on_an_empty_porch_and_opens_as_fast(tiny_models, tmp_path):
    from tl.device.door.loop import run_door

    folder = tmp_path / "porch"
    kinds = timeline(("background", 200), ("dog", 8), ("background", 40))
    write_frames(folder, kinds, seed=5)
    (folder / "frame_00100.jpg").write_bytes(b"not a jpeg")  # one unreadable frame on the way
    empty = tmp_path / "empty"  # the same 30 s of empty porch, on its own
    empty.mkdir()
    for path in sorted(folder.iterdir())[:200]:
        (empty / path.name).symlink_to(path)
    runs = {}
    for motion in (False, True):
        for name, source in (("porch", folder), ("empty", empty)):
            key = f"{name}-{motion}"
            stats = run_door(options(tiny_models["tiny_int8"], source, tmp_path, key, motion=motion))
            runs[name, motion] = (stats, read_events(tmp_path / f"{key}.jsonl"))
    # 199 readable frames of empty porch: without gating all reach the model, with it 1 in 20.
    assert runs["empty", False][0].classified == 199
    assert runs["empty", True][0].classified <= 0.1 * 199
    assert runs["empty", True][0].classified == 10  # the first frame and a heartbeat every 2 s
    # The dog opens the door on the same frame either way.
    opened = {motion: [(e["frame"], e["ts"]) for e in runs["porch", motion][1] if e["event"] == "door_open"]
              for motion in (False, True)}
    assert opened[False] == opened[True] == [(202, 20.2)]
    gated, events = runs["porch", True]
    stop = events[-1]
    assert stop["event"] == "stop" and gated.classified < 0.3 * len(kinds)
    assert {k: stop[k] for k in ("frames", "classified", "skipped_motion", "unreadable")} == {
        "frames": len(kinds) - 1, "classified": gated.classified, "skipped_motion": gated.skipped_motion,
        "unreadable": 1}
    assert stop["frames"] == stop["classified"] + stop["skipped_motion"]
