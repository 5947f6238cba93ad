"""The daemon end to end: generated porch scenes through a trained int8 model to a mock door."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("gpiozero")
from gpiozero.pins.mock import MockFactory

from tests.support.scenes import make_scene, timeline, write_frames, write_video
from tl.device.cli.tl_device import main
from tl.device.door import config
from tl.device.door.events import EventLog, read_events
from tl.device.door.loop import DoorLoop, StopRequest, run_door
from tl.device.door.policy import DoorPolicy, make_policy_config
from tl.device.errors import ConfigError, ModelError
from tl.device.hw.cameras import Reconnecting
from tl.device.hw.doors import make_door
from tl.device.hw.fakes import FakeCamera, FakeClock
from tl.device.model.classifier import Classifier

# Empty porch -> dog -> empty -> raccoon -> dog again (locked out) -> empty, at 10 fps.
PORCH = timeline(("background", 10), ("dog", 8), ("background", 25), ("raccoon", 3), ("dog", 6), ("background", 4))


@pytest.fixture(scope="module")
def porch_frames(tmp_path_factory):
    return write_frames(tmp_path_factory.mktemp("porch") / "frames", PORCH, seed=11)


def options(model, source, tmp_path, **extra):
    values = {"model": str(model), "source": str(source), "allow": ("dog",), "door": "mock",
              "open_seconds": 2.0, "lockout_seconds": 30.0, "threshold": 0.7,
              "events": str(tmp_path / "events.jsonl"), **extra}
    return config.load_config(None, values)


def decisions(events):
    return [(e["frame"], e["event"], e["label"]) for e in events]


def test_replay_of_a_porch_evening_opens_for_the_dog_only(tiny_models, porch_frames, tmp_path):
    factory = MockFactory()
    cfg = options(tiny_models["tiny_int8"], porch_frames, tmp_path, snapshots=str(tmp_path / "snaps"), threads=2)
    stats = run_door(cfg, pin_factory=factory)
    events = read_events(tmp_path / "events.jsonl")
    assert decisions(events) == [
        (None, "start", None),
        (12, "door_open", "dog"),      # third dog frame: 0.2 s after the first
        (37, "door_close", None),      # last dog at frame 17, + 2 s
        (43, "denied", "raccoon"),     # the raccoon locks the door...
        (None, "stop", None),          # ...so the dog after it does not get in
    ]
    opened = events[1]
    assert opened["ts"] == pytest.approx(1.2) and opened["reason"] == "dog 3/5 >= 0.70"
    assert opened["ts"] - 1.0 <= 0.5
    assert events[2]["reason"] == "no dog for 2 s" and events[2]["ts"] == pytest.approx(3.7)
    assert events[-1]["ts"] == pytest.approx((len(PORCH) - 1) / 10)
    assert "end of source" in events[-1]["reason"]
    # The relay pin went closed -> open -> closed, and stayed closed.
    assert [s.state for s in factory.pin(17).states] == [False, True, False]
    assert stats.frames == len(PORCH) and stats.skipped == 0
    snaps = sorted(p.name for p in (tmp_path / "snaps").iterdir())
    assert len(snaps) == 2 and "-12-door_open-dog" in snaps[0] + snaps[1] and "-43-denied-raccoon" in "".join(snaps)


def test_realtime_replay_makes_identical_decisions(tiny_models, tmp_path):
    frames = write_frames(tmp_path / "short", timeline(("background", 3), ("dog", 6), ("raccoon", 2)), seed=3)
    runs = []
    for realtime in (False, True):
        out = tmp_path / str(realtime)
        out.mkdir()
        start = time.monotonic()
        run_door(options(tiny_models["tiny_int8"], frames, out, fps=50.0, realtime=realtime))
        runs.append((read_events(out / "events.jsonl"), time.monotonic() - start))
    (fast, _), (paced, paced_s) = runs
    assert paced_s >= 10 / 50 - 0.02  # 11 frames at 50 fps: at least 0.2 s
    assert [(e["ts"], e["frame"], e["event"], e["label"], e["score"]) for e in fast] == \
           [(e["ts"], e["frame"], e["event"], e["label"], e["score"]) for e in paced]
    assert [e["event"] for e in fast] == ["start", "door_open", "door_close", "denied", "stop"]


def test_video_replay_uses_the_files_timestamps(tiny_models, tmp_path):
    video = write_video(tmp_path / "porch.avi", timeline(("background", 6), ("dog", 6)), fps=20.0)
    run_door(options(tiny_models["tiny_int8"], video, tmp_path, fps=20.0))
    events = read_events(tmp_path / "events.jsonl")
    assert decisions(events)[1] == (8, "door_open", "dog")
    assert events[1]["ts"] == pytest.approx(8 / 20)


def _loop(tiny_models, factory, events_path, **policy):
    classifier = Classifier(tiny_models["tiny_int8"])
    pc = make_policy_config(classifier.labels, ["dog"], threshold=0.7, **policy)
    door = make_door("mock", pin_factory=factory)
    return DoorLoop(classifier, DoorPolicy(pc), door, EventLog(events_path))


def test_exception_in_the_loop_closes_the_door(tiny_models, tmp_path, monkeypatch):
    factory = MockFactory()
    frames = write_frames(tmp_path / "dogs", ["dog"] * 8)
    loop = _loop(tiny_models, factory, tmp_path / "events.jsonl")
    real = loop.classifier.classify_frame
    calls = []

    def flaky(image, roi=None):
        calls.append(1)
        if len(calls) == 6:
            raise RuntimeError("interpreter fell over")
        return real(image, roi)

    monkeypatch.setattr(loop.classifier, "classify_frame", flaky)
    from tl.device.hw.sources import FolderSource

    with pytest.raises(RuntimeError, match="fell over"):
        loop.run(FolderSource(frames), StopRequest())
    events = read_events(tmp_path / "events.jsonl")
    assert [e["event"] for e in events] == ["start", "door_open", "error", "door_close", "stop"]
    assert events[2]["reason"] == "RuntimeError: interpreter fell over" and events[2]["frame"] == 5
    assert factory.pin(17).state is False
    assert loop.door.is_open is False


def test_camera_loss_closes_the_door_and_reconnects(tiny_models, tmp_path):
    clock = FakeClock(1000.0)
    dog = make_scene("dog", np.random.default_rng(2))
    camera = FakeCamera(["fail", 6, "fail", "fail", 5], clock=clock, fps=10, image=dog)
    stop = StopRequest()

    def sleep(seconds):
        clock.sleep(seconds)
        if camera.opens >= 6:
            stop.request("test over")
        return stop.is_set()

    source = Reconnecting(camera, clock=clock, sleep=sleep)
    factory = MockFactory()
    loop = _loop(tiny_models, factory, tmp_path / "events.jsonl")
    stats = loop.run(source, stop)
    events = read_events(tmp_path / "events.jsonl")
    assert [e["event"] for e in events] == [
        "start", "error",                          # no camera at start: said once, retried
        "door_open", "door_close", "error",        # dog, then the camera drops out: closed at once
        "door_open", "door_close", "error",        # back (after two failed retries), dog, gone again
        "stop"]
    assert "cannot open it" in events[1]["reason"] and "retrying" in events[1]["reason"]
    assert events[3]["reason"].startswith("no camera: fake camera: stopped delivering")
    assert [e["frame"] for e in events if e["event"] == "door_open"] == [2, 8]  # indices go on
    assert events[-1]["reason"].startswith("test over")
    assert [s.state for s in factory.pin(17).states] == [False, True, False, True, False]
    assert stats.frames == 11 and stats.stop_reason == "test over"


def test_bad_model_is_refused_with_the_door_closed(tiny_models, porch_frames, tmp_path):
    factory = MockFactory()
    with pytest.raises(ModelError, match="not a TFLite model"):
        run_door(options(tiny_models["not_tflite"], porch_frames, tmp_path), pin_factory=factory)
    pin = factory.pin(17)
    assert [s.state for s in pin.states] == [False] and pin.function == "input"  # released, never opened
    assert not (tmp_path / "events.jsonl").exists()
    result = CliRunner().invoke(main, ["run", "--model", str(tiny_models["truncated"]), "--source", str(porch_frames),
                                       "--allow", "dog", "--door", "mock"])
    assert result.exit_code == 2 and "truncated.tflite" in result.output


def test_unknown_allowed_class_is_refused_before_anything_starts(tiny_models, porch_frames, tmp_path):
    with pytest.raises(ConfigError, match="'wolf'.*background, dog, raccoon"):
        run_door(options(tiny_models["tiny_int8"], porch_frames, tmp_path, allow=("wolf",)))
    assert not (tmp_path / "events.jsonl").exists()


def test_status_line_is_logged(tiny_models, porch_frames, tmp_path, caplog):
    caplog.set_level("INFO", logger="tl.device")
    run_door(options(tiny_models["tiny_int8"], porch_frames, tmp_path, status_seconds=1e-9))
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("status:"))
    assert "fps, door closed, last background" in line


def test_sigterm_stops_the_daemon_with_the_door_closed(tiny_models, tmp_path):
    frames = write_frames(tmp_path / "dogs", ["dog"] * 60)  # 12 s at 5 fps, in real time
    events = tmp_path / "events.jsonl"
    cmd = [sys.executable, "-m", "tl.device.cli.tl_device", "run", "--model", str(tiny_models["tiny_int8"]),
           "--source", str(frames), "--fps", "5", "--realtime", "--allow", "dog", "--threshold", "0.7",
           "--door", "mock", "--events", str(events)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (events.exists() and "door_open" in events.read_text()):
            time.sleep(0.05)
        assert "door_open" in events.read_text()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    got = read_events(events)
    assert [e["event"] for e in got] == ["start", "door_open", "door_close", "stop"]
    assert got[2]["reason"] == "stop: SIGTERM" and got[3]["reason"].startswith("SIGTERM")
    assert got[3]["ts"] < 5.0  # it stopped early, not at the end of the 12 s replay
    assert "mock door on GPIO17 closed" in err
