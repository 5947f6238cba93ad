"""Fakes shipped beside the real hardware, for tests and demos: a clock, a camera that drops out, a Picamera2.

    clock = FakeClock()
    camera = FakeCamera(["fail", 5, "fail", 3], clock=clock, fps=10)
    source = Reconnecting(camera, clock=clock, sleep=clock.sleep)

gives a failed open, five frames, a loss, a failed reopen, three frames, a loss, and then fails
every open, with the clock advanced by each frame interval and each backoff sleep: nothing waits.

    factory = FakePicamera2Factory([5, "fail", 3], clock=clock)
    source = Reconnecting(PiCamera(size=(640, 480), feed=ModelFeed(spec), factory=factory), ...)

runs the real picamera2 adapter against a fake that records the configuration asked of it.
"""

import cv2
import numpy as np

from tl.device.errors import CameraError


class FakeClock:
    """A clock that only moves when told to: `sleep` advances it and records the delays.

    Attributes:
      now: the current time in seconds.
      sleeps: every delay `sleep` was called with.
    """

    def __init__(self, start=0.0):
        self.now = float(start)
        self.sleeps = []

    def __call__(self):
        return self.now

    def advance(self, seconds):
        """Moves the clock on by `seconds`."""
        self.now += seconds

    def sleep(self, seconds):
        """Advances the clock instead of waiting; returns False (never asks to stop)."""
        self.sleeps.append(seconds)
        self.advance(seconds)
        return False


class FakeCamera:
    """A camera (the `cameras` interface) that follows a plan of opens.

    Args:
      plan: one entry per `open()`: "fail" (the open raises CameraError) or a number of frames
        to deliver before the camera drops out. After the plan, every open fails.
      clock: the FakeClock; each grab advances it by 1 / rate, as a real camera's blocking read takes.
      fps: the frame rate asked of the camera (the cap `Reconnecting` applies).
      rate: the frame rate it really delivers (default: fps).
      image: the frame to deliver (a BGR array), or a function of the frame count giving one
        (None from it: a frame that does not decode).

    Attributes:
      opens, closes: how many times open() and close() were called.
      is_open: whether the camera is open now.
    """

    def __init__(self, plan, clock, fps=10.0, rate=None, image=None):
        self.plan = list(plan)
        self.clock = clock
        self.fps = float(fps)
        self.rate = float(rate or fps)
        self.image = image if image is not None else np.zeros((48, 64, 3), np.uint8)
        self.opens = 0
        self.closes = 0
        self.is_open = False
        self._left = 0
        self._count = 0

    def __str__(self):
        return "fake camera"

    def open(self):
        """Opens per the plan; raises CameraError for a "fail" entry or once the plan is used up."""
        step = self.plan[self.opens] if self.opens < len(self.plan) else "fail"
        self.opens += 1
        if step == "fail":
            raise CameraError("fake camera: cannot open it (planned)")
        self._left = int(step)
        self.is_open = True

    def grab(self, clock):
        """Delivers the next planned frame, or drops out when this open's frames are used up."""
        if not self.is_open or self._left <= 0:
            raise CameraError("fake camera: stopped delivering frames (planned)")
        self.clock.advance(1.0 / self.rate)
        self._left -= 1
        self._count += 1
        return clock()

    def retrieve(self):
        """Returns the frame for the current count."""
        return self.image(self._count - 1) if callable(self.image) else self.image

    def close(self):
        """Closes it; safe twice."""
        if self.is_open:
            self.is_open = False
        self.closes += 1


class FakePicamera2Factory:
    """Makes FakePicamera2s, the stand-ins for picamera2.Picamera2 (pass it as `PiCamera(factory=...)`).

    Args:
      plan: one entry per camera made: "fail" (Picamera2() raises, as with no camera attached) or the
        number of frames it delivers before it vanishes (capture raises). After the plan: "fail".
      scene: full-size BGR frames served in turn (the sensor's view), or None: a grey ramp.
      clock: a FakeClock advanced by 1 / fps per frame (None: nothing advances).
      fps: the rate the fake delivers.
      lores_formats: the lores formats the fake's ISP allows ("YUV420" only, as a Pi 4; a Pi 5 also "BGR888").

    Attributes:
      cameras: every FakePicamera2 made, in order.
    """

    def __init__(self, plan=(10**9,), scene=None, clock=None, fps=10.0, lores_formats=("YUV420", "BGR888")):
        self.plan = list(plan)
        self.scene = scene
        self.clock = clock
        self.fps = float(fps)
        self.lores_formats = tuple(lores_formats)
        self.cameras = []
        self._served = 0

    def __call__(self):
        step = self.plan[len(self.cameras)] if len(self.cameras) < len(self.plan) else "fail"
        if step == "fail":
            self.cameras.append(None)
            raise RuntimeError("fake picamera2: no cameras available (planned)")
        cam = FakePicamera2(self, int(step))
        self.cameras.append(cam)
        return cam

    def view(self, size):
        """The sensor's next view as a BGR array at `size` (the full-size frame; the ISP scales from it)."""
        if self.scene is None:
            ramp = np.linspace(0, 255, size[0], dtype=np.float32).astype(np.uint8)
            return np.repeat(np.repeat(ramp[None, :, None], size[1], 0), 3, 2)
        frame = self.scene[self._served % len(self.scene)]
        self._served += 1
        return frame if frame.shape[1::-1] == tuple(size) else cv2.resize(frame, tuple(size), interpolation=cv2.INTER_AREA)


class FakePicamera2:
    """A Picamera2 that records what it is asked (configurations, starts, stops, closes) and serves frames.

    Streams are rendered from the factory's full-size view as the ISP would: `main` in the format
    asked ("RGB888" is stored B, G, R), `lores` scaled to its size, as "BGR888" (R, G, B) or
    "YUV420" (I420 planes, `stride` columns wide). Rendered frames are cached per scene frame, so
    serving one costs a copy, as a real camera's buffer does.

    Attributes:
      configs: every configuration passed to configure().
      camera_config: the configuration in force (with "stride" added per stream), or None.
      started, closed: state; requests: requests served; released: requests released;
      made: {stream name: arrays copied out of requests}.
    """

    def __init__(self, factory, frames):
        self.factory = factory
        self.left = frames
        self.configs = []
        self.camera_config = None
        self.started = False
        self.closed = False
        self.requests = 0
        self.released = 0
        self.made = {}
        self._cache = {}

    def create_video_configuration(self, main=None, lores=None, controls=None, **kwargs):
        """Returns a configuration dict, as picamera2 does (streams it was not given are None)."""
        return {"main": dict(main or {"size": (640, 480), "format": "XBGR8888"}),
                "lores": dict(lores) if lores else None, "controls": dict(controls or {}), **kwargs}

    def configure(self, config):
        """Records `config`; raises RuntimeError for a lores format the fake ISP does not do."""
        self.configs.append(config)
        lores = config.get("lores")
        if lores and lores["format"] not in self.factory.lores_formats:
            raise RuntimeError(f"lores stream must be one of {self.factory.lores_formats} (fake)")
        if lores and (lores["size"][0] > config["main"]["size"][0] or lores["size"][1] > config["main"]["size"][1]):
            raise RuntimeError("lores stream dimensions may not exceed main stream (fake)")
        self.camera_config = {k: (dict(v, stride=_stride(v)) if k in ("main", "lores") and v else v)
                              for k, v in config.items()}
        self._cache = {}

    def start(self):
        self.started = True

    def stop(self):
        self.started = False

    def close(self):
        self.closed = True
        self.started = False

    def capture_request(self):
        """The next frame's request; raises RuntimeError once this camera has vanished."""
        if not self.started or self.closed:
            raise RuntimeError("fake picamera2: camera not started")
        if self.left <= 0:
            raise RuntimeError("fake picamera2: device vanished (planned)")
        self.left -= 1
        self.requests += 1
        if self.factory.clock is not None:
            self.factory.clock.advance(1.0 / self.factory.fps)
        key = self.factory._served % len(self.factory.scene) if self.factory.scene else 0
        if key not in self._cache:
            view = self.factory.view(self.camera_config["main"]["size"])
            self._cache[key] = {name: _render(view, self.camera_config[name])
                                for name in ("main", "lores") if self.camera_config.get(name)}
        elif self.factory.scene:
            self.factory._served += 1
        return FakeRequest(self, self._cache[key])

    def capture_array(self, name="main"):
        """A copy of the next frame's `name` stream."""
        request = self.capture_request()
        try:
            return request.make_array(name)
        finally:
            request.release()


class FakeRequest:
    """One captured frame's buffers; `make_array` copies one out, `release` hands them back."""

    def __init__(self, camera, arrays):
        self.camera = camera
        self.arrays = arrays
        self.is_released = False

    def make_array(self, name):
        if self.is_released:
            raise RuntimeError("fake picamera2: request used after release")
        self.camera.made[name] = self.camera.made.get(name, 0) + 1
        return self.arrays[name].copy()

    def release(self):
        if not self.is_released:
            self.is_released = True
            self.camera.released += 1


def _stride(stream):
    if stream["format"] == "YUV420":
        return -(-stream["size"][0] // 64) * 64
    return stream["size"][0] * 3


def _render(view, stream):
    """A BGR view as the ISP would deliver `stream` ({"size", "format", "stride"})."""
    size = tuple(stream["size"])
    image = view if view.shape[1::-1] == size else cv2.resize(view, size, interpolation=cv2.INTER_AREA)
    if stream["format"] == "BGR888":
        return np.ascontiguousarray(image[:, :, ::-1])
    if stream["format"] == "YUV420":
        width, height, stride = size[0], size[1], stream["stride"]
        padded = np.zeros((height, stride, 3), np.uint8)
        padded[:, :width] = image
        padded[:, width:] = image[:, -1:]
        return cv2.cvtColor(padded, cv2.COLOR_BGR2YUV_I420)
    return image
