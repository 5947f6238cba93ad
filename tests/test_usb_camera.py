"""USB/V4L2 cameras are asked for the smallest frame the model needs, and what they grant is logged and used."""

import logging

import cv2
import numpy as np
import pytest

from tl.device.errors import CameraError
from tl.device.hw.cameras import OpenCVCamera, Reconnecting
from tl.device.hw.fakes import FakeClock, FakeVideoCaptureFactory
from tl.device.hw.feed import ModelFeed
from tl.device.hw.sources import open_source
from tl.device.model.contract import InputSpec, prepare_frame

SPEC = InputSpec(224, 224)
ROI = (80, 0, 480, 480)


def porch(size=(640, 480)):
    """A smooth BGR scene with an object in it (smooth, so that scaled copies compare closely)."""
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (size[1] // 40, size[0] // 40, 3), dtype=np.uint8)
    frame = cv2.resize(small, size, interpolation=cv2.INTER_CUBIC)
    cv2.circle(frame, (size[0] // 2, size[1] // 2), size[1] // 4, (30, 200, 90), -1)
    return cv2.GaussianBlur(frame, (9, 9), 0)


class TickingClock(FakeClock):
    """A fake clock a camera's blocking read moves on by one frame interval (10 fps)."""

    def __call__(self):
        self.now += 0.1
        return self.now


def usb(factory, feed=None):
    camera = OpenCVCamera(0, fps=10, size=(640, 480), feed=feed, capture=factory)
    clock = TickingClock()
    return camera, Reconnecting(camera, clock=clock, sleep=clock.sleep)


def test_usb_camera_is_asked_for_the_smallest_adequate_mode_and_the_grant_is_logged(caplog):
    factory = FakeVideoCaptureFactory(scene=[porch()])
    camera, source = usb(factory, ModelFeed(SPEC, ROI))
    with caplog.at_level(logging.INFO, logger="tl.device.hw.cameras"):
        frame = next(source.frames())
    assert factory.captures[0].asked == [(300, 224)]  # the 480-pixel ROI at 224: 640 * 224/480, even
    assert camera.asked == (300, 224) and camera.granted == (320, 240)
    assert "asked 300x224, granted 320x240" in caplog.text
    assert factory.captures[0].props[cv2.CAP_PROP_BUFFERSIZE] == 1
    exact = prepare_frame(porch(), SPEC, ROI)
    assert frame.pixels.shape == exact.shape
    assert np.abs(frame.pixels.astype(int) - exact).mean() < 3  # the camera's scaling, not the exact path's
    assert frame.image.shape == (480, 640, 3)  # upscaled from the grant, made only when asked for
    source.close()


def test_a_grant_too_small_or_of_another_shape_falls_back_to_the_full_size(caplog):
    factory = FakeVideoCaptureFactory(modes=[(352, 288), (640, 480)], scene=[porch()])  # CIF: 11:9, not 4:3
    camera, source = usb(factory, ModelFeed(SPEC, ROI))
    with caplog.at_level(logging.INFO, logger="tl.device.hw.cameras"):
        frame = next(source.frames())
    assert factory.captures[0].asked == [(300, 224), (640, 480)]
    assert camera.granted == (640, 480)
    assert "another shape" in caplog.text
    assert frame.pixels is None and frame.image.shape == (480, 640, 3)  # the full-frame path
    source.close()


def test_without_a_feed_the_camera_is_asked_for_the_capture_size():
    factory = FakeVideoCaptureFactory(scene=[porch()])
    camera, source = usb(factory)
    frame = next(source.frames())
    assert factory.captures[0].asked == [(640, 480)] and camera.granted == (640, 480)
    assert frame.pixels is None and frame.image.shape == (480, 640, 3)
    source.close()


def test_a_stream_url_is_not_asked_for_a_size():
    factory = FakeVideoCaptureFactory()
    camera = OpenCVCamera("rtsp://10.0.0.5/stream", size=(640, 480), feed=ModelFeed(SPEC), capture=factory)
    camera.open()
    assert factory.captures[0].asked == [] and camera.granted is None
    camera.close()
    camera.close()  # safe twice


def test_usb_camera_reconnects_and_asks_again_after_it_is_unplugged():
    factory = FakeVideoCaptureFactory(scene=[porch()], frames=2)
    camera, source = usb(factory, ModelFeed(SPEC))
    items = source.frames()
    got = [next(items) for _ in range(4)]
    assert [type(i).__name__ for i in got] == ["Frame", "Frame", "Gap", "Frame"]
    assert len(factory.captures) == 2 and factory.captures[1].asked == [(300, 224)]  # squash 224x224: a 4:3 mode covering it
    assert got[3].pixels.shape == (224, 224, 3) and got[3].index == 2
    source.close()


def test_a_camera_that_does_not_open_says_what_to_check():
    camera = OpenCVCamera(0, capture=FakeVideoCaptureFactory(opens=False))
    with pytest.raises(CameraError, match="video group"):
        camera.open()


def test_open_source_hands_a_usb_camera_the_model_feed():
    source = open_source("0", fps=10, spec=SPEC, roi=ROI)
    assert source.camera.feed is not None and source.camera.feed.roi == ROI
