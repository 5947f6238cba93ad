"""Frame sources: folder and video replays, real-time pacing, the fake camera, reconnecting with backoff."""

import cv2
import numpy as np
import pytest

from tests.support.scenes import timeline, write_frames, write_video
from tl.device.errors import ConfigError, DataError
from tl.device.hw.cameras import Backoff, CameraError, OpenCVCamera, Reconnecting
from tl.device.hw.fakes import FakeCamera, FakeClock
from tl.device.hw.frames import Frame, Gap, RateCap
from tl.device.hw.sources import FolderSource, VideoSource, classify_source, open_source, pace


def test_folder_replays_in_name_order_at_fps(tmp_path):
    folder = write_frames(tmp_path / "frames", timeline(("background", 3), ("dog", 2)))
    with open_source(str(folder), fps=5) as source:
        assert isinstance(source, FolderSource) and not source.live
        frames = list(source.frames())
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]
    assert [f.ts for f in frames] == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8])
    assert frames[0].image.shape == (480, 640, 3) and frames[0].image.dtype == np.uint8


def test_folder_counts_and_skips_unreadable_frames_keeping_timestamps(tmp_path):
    folder = write_frames(tmp_path / "frames", ["background"] * 4)
    (folder / "frame_00001.jpg").write_bytes(b"\xff\xd8 truncated")
    (folder / "frame_00002.jpg").write_bytes(b"")
    (folder / ".hidden.jpg").write_bytes(b"x")
    source = FolderSource(folder, fps=10)
    frames = list(source.frames())
    assert [f.index for f in frames] == [0, 3]
    assert frames[1].ts == pytest.approx(0.3)
    assert source.skipped == 2


def test_empty_folder_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no frames"):
        FolderSource(tmp_path / "empty")


def test_video_replays_on_its_own_timestamps(tmp_path):
    path = write_video(tmp_path / "porch.avi", ["background"] * 6, fps=20)
    with VideoSource(path, fps=None) as source:
        frames = list(source.frames())
        assert source.native_fps == pytest.approx(20)
    assert [f.index for f in frames] == list(range(6))
    assert [f.ts for f in frames] == pytest.approx([i / 20 for i in range(6)])
    source.close()  # safe twice


def test_video_is_capped_at_fps_without_decoding_skipped_frames(tmp_path):
    path = write_video(tmp_path / "porch.avi", ["background"] * 12, fps=30)
    frames = list(VideoSource(path, fps=10).frames())
    assert [f.index for f in frames] == [0, 3, 6, 9]
    assert [f.ts for f in frames] == pytest.approx([0.0, 0.1, 0.2, 0.3])


def test_not_a_video_is_refused(tmp_path):
    bad = tmp_path / "notes.avi"
    bad.write_text("not a video")
    with pytest.raises(DataError, match="OpenCV cannot open it"):
        VideoSource(bad)


def test_classify_source(tmp_path):
    (tmp_path / "dir").mkdir()
    (tmp_path / "v.mp4").write_bytes(b"x")
    assert classify_source("picamera") == "picamera"
    assert classify_source("0") == "camera"
    assert classify_source("rtsp://user:pw@10.0.0.5/stream") == "camera"
    assert classify_source("/dev/video2") == "camera"
    assert classify_source(str(tmp_path / "dir")) == "folder"
    assert classify_source(str(tmp_path / "v.mp4")) == "video"
    with pytest.raises(ConfigError, match="neither a camera nor an existing file"):
        classify_source(str(tmp_path / "missing.mp4"))


def test_rate_cap():
    cap = RateCap(10)
    kept = [t for t in np.arange(0, 1.0, 1 / 30) if cap.keep(t)]
    assert len(kept) == 10
    cap = RateCap(10)
    assert cap.keep(0.0) and not cap.keep(0.05) and cap.keep(0.098)  # jitter tolerated
    assert cap.keep(5.0) and not cap.keep(5.03) and cap.keep(5.1)  # after a stall: no burst
    assert all(RateCap(None).keep(t) for t in (0, 0, 0.001))


def test_pace_waits_for_each_frame_on_the_clock():
    clock = FakeClock(100.0)
    frames = [Frame(i / 10, i, None) for i in range(5)]
    out = list(pace(iter(frames), clock=clock, sleep=clock.sleep))
    assert out == frames
    assert clock.sleeps == pytest.approx([0.1] * 4)
    assert clock() == pytest.approx(100.4)


def test_pace_stops_when_sleep_says_so():
    frames = [Frame(i / 10, i, None) for i in range(5)]
    out = list(pace(iter(frames), clock=lambda: 0.0, sleep=lambda s: True))
    assert out == frames[:1]


def test_fake_camera_follows_its_plan():
    clock = FakeClock()
    camera = FakeCamera(["fail", 2], clock=clock, fps=10, image=lambda n: np.full((2, 2, 3), n, np.uint8))
    with pytest.raises(CameraError, match="planned"):
        camera.open()
    camera.open()
    assert camera.grab(clock) == pytest.approx(0.1)
    assert camera.retrieve()[0, 0, 0] == 0
    assert camera.grab(clock) == pytest.approx(0.2)
    assert camera.retrieve()[0, 0, 0] == 1
    with pytest.raises(CameraError, match="stopped delivering"):
        camera.grab(clock)
    camera.close()
    camera.close()
    assert not camera.is_open
    with pytest.raises(CameraError):  # the plan is used up: every open fails
        camera.open()
    assert camera.opens == 3


def test_reconnecting_backs_off_and_resets_after_frames():
    clock = FakeClock()
    camera = FakeCamera(["fail", "fail", 3, "fail", 2], clock=clock, fps=10)
    source = Reconnecting(camera, clock=clock, sleep=clock.sleep, backoff=Backoff(0.5, 4.0))
    items = []
    for item in source.frames():
        items.append(item)
        if len(items) == 12:
            break
    kinds = ["gap" if isinstance(i, Gap) else "frame" for i in items]
    assert kinds == ["gap", "gap", "frame", "frame", "frame", "gap", "gap", "frame", "frame", "gap", "gap", "gap"]
    gaps = [i for i in items if isinstance(i, Gap)]
    assert [g.attempt for g in gaps] == [1, 2, 1, 2, 1, 2, 3]
    assert [g.retry_in for g in gaps] == [0.5, 1.0, 0.5, 1.0, 0.5, 1.0, 2.0]
    assert clock.sleeps == [0.5, 1.0, 0.5, 1.0, 0.5, 1.0]
    frames = [i for i in items if isinstance(i, Frame)]
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]  # indices go on across reconnects
    assert "planned" in gaps[0].reason
    assert not camera.is_open  # closed after each failure and when the loop broke off


def test_undecodable_live_frames_are_counted_and_skipped():
    clock = FakeClock()
    image = np.zeros((4, 4, 3), np.uint8)
    camera = FakeCamera([4], clock=clock, fps=10, image=lambda n: None if n == 1 else image)
    source = Reconnecting(camera, clock=clock, sleep=lambda s: True)
    items = list(source.frames())
    assert [type(i).__name__ for i in items] == ["Frame", "Frame", "Frame", "Gap"]
    assert [i.index for i in items[:3]] == [0, 1, 2] and source.skipped == 1


def test_backoff_is_capped():
    assert [Backoff(0.5, 30).delay(n) for n in (1, 2, 3, 7, 8, 20)] == [0.5, 1, 2, 30, 30, 30]


def test_reconnecting_stops_when_sleep_returns_true():
    clock = FakeClock()
    source = Reconnecting(FakeCamera([], clock=clock), clock=clock, sleep=lambda s: True)
    items = list(source.frames())
    assert len(items) == 1 and isinstance(items[0], Gap)


def test_reconnecting_caps_camera_rate():
    clock = FakeClock()
    camera = FakeCamera([30], clock=clock, fps=10, rate=30)  # asked for 10 fps, delivers 30
    source = Reconnecting(camera, clock=clock, sleep=clock.sleep)
    frames = []
    for item in source.frames():
        if isinstance(item, Gap):
            break
        frames.append(item)
    assert len(frames) == 10
    assert np.diff([f.ts for f in frames]) == pytest.approx([0.1] * 9)


def test_opencv_camera_that_cannot_open_says_what_to_check():
    camera = OpenCVCamera("/dev/video-missing-for-test")
    with pytest.raises(CameraError, match="ls /dev/video"):
        camera.open()
    camera.close()


def test_live_source_from_open_source_is_reconnecting():
    source = open_source("rtsp://127.0.0.1:9/none", fps=5)
    assert isinstance(source, Reconnecting) and source.live
    source.close()


def test_picamera_without_picamera2_is_refused_at_once(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "picamera2" else real(name, *a))
    with pytest.raises(ConfigError, match="apt install python3-picamera2"):
        open_source("picamera")


def test_camera_frames_are_bgr_like_replays(tmp_path):
    # A pure-blue BGR frame written and replayed stays blue in channel 0.
    folder = tmp_path / "blue"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.dstack([np.full((16, 16), 255, np.uint8), np.zeros((16, 16), np.uint8),
                                                  np.zeros((16, 16), np.uint8)]))
    frame = next(FolderSource(folder).frames())
    assert frame.image[0, 0].tolist() == [255, 0, 0]
