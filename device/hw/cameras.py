"""Live cameras (OpenCV: USB, /dev/video, RTSP; picamera2), and reconnecting with backoff.

A camera here is small: `open()`, `grab(clock) -> ts` (waits for the next frame and stamps it),
`retrieve() -> BGR image, Capture or None` (decodes it; skipped frames are never decoded) and `close()`. The
`Reconnecting` source turns one into frames, and into `Gap`s while it is away.
"""

import collections
import functools
import importlib.util
import logging
import time

import cv2

from tl.device.errors import CameraError, ConfigError
from tl.device.hw.frames import Frame, Gap, RateCap, Source

log = logging.getLogger(__name__)

Capture = collections.namedtuple("Capture", ["image", "pixels"])
Capture.__doc__ = "What a camera's retrieve() may return: the full frame (or a function making it) and the model's input."


class OpenCVCamera:
    """A camera OpenCV opens: a USB index, a /dev/video path, or a stream URL (rtsp://, http://).

    Args:
      target: an int index, a device path or a URL.
      fps: frame rate asked of the camera.
      size: (width, height) asked of the camera.
    """

    def __init__(self, target, fps=10.0, size=(640, 480)):
        self.target = target
        self.fps = float(fps)
        self.size = tuple(size)
        self._cap = None

    def __str__(self):
        return f"camera {self.target}"

    def open(self):
        """Opens the camera; raises CameraError with what to check."""
        cap = cv2.VideoCapture(self.target)
        if not cap.isOpened():
            cap.release()
            raise CameraError(f"{self}: cannot open it; {_hint(self.target)}")
        if not isinstance(self.target, str) or self.target.startswith("/dev/"):
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.size[0])
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.size[1])
            cap.set(cv2.CAP_PROP_FPS, self.fps)
        # Keep the driver's queue short, so a slow model sees the newest frame, not an old one.
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        self._cap = cap

    def grab(self, clock):
        """Waits for the next frame; returns its timestamp on `clock`."""
        if self._cap is None or not self._cap.grab():
            raise CameraError(f"{self}: stopped delivering frames")
        return clock()

    def retrieve(self):
        """Decodes the grabbed frame into BGR pixels; None if it does not decode."""
        ok, image = self._cap.retrieve()
        return image if ok else None

    def close(self):
        """Releases the camera; safe twice."""
        if self._cap is not None:
            self._cap.release()
            self._cap = None


def _hint(target):
    if isinstance(target, int) or str(target).startswith("/dev/"):
        return "check that it is plugged in (ls /dev/video*) and that this user is in the video group"
    return "check the URL, the credentials in it, and that the camera is reachable (ping it)"


class PiCamera:
    """The Raspberry Pi camera through picamera2, imported only when the camera is opened.

    Without a ModelFeed it delivers full-size BGR frames from the `main` stream. With one, the ISP
    does the resizing: a `lores` stream is configured so that the model's region comes out at the
    model's size, and each frame carries the model's RGB input (`Frame.pixels`); the full-size `main`
    stream is only copied out when something asks for the frame's image (a snapshot, the motion gate).

    Args:
      fps: the sensor frame rate (FrameRate control).
      size: (width, height) of the full-size frames (the ROI is in these pixels).
      feed: a ModelFeed, or None.
      factory: makes the Picamera2 object (tests: `tl.device.hw.fakes.FakePicamera2Factory`);
        None: picamera2's own.

    Raises:
      ConfigError: at once when picamera2 is not installed (no retry fixes that).
    """

    # lores formats to try, best first. "BGR888" is stored R, G, B: the model's order, no conversion
    # (a Pi 5 allows it); a Pi 4's lores stream is YUV420 only, converted at the model's size.
    LORES_FORMATS = ("BGR888", "YUV420")

    def __init__(self, fps=10.0, size=(640, 480), feed=None, factory=None):
        if factory is None and importlib.util.find_spec("picamera2") is None:
            raise ConfigError("source picamera: picamera2 is not installed; on Raspberry Pi OS run "
                              "`sudo apt install python3-picamera2` and create the venv with --system-site-packages")
        self.fps = float(fps)
        self.size = tuple(size)
        self.feed = feed
        self.factory = factory
        self.lores_format = None
        self._cam = None
        self._request = None

    def __str__(self):
        return "picamera" + (f" ({self.feed}, lores {self.lores_format})" if self.lores_format else "")

    def open(self):
        """Starts the camera; raises CameraError with what to check."""
        try:
            cam = self._make()
        except (RuntimeError, IndexError, OSError) as e:
            raise CameraError(f"picamera: no camera found ({e}); check the ribbon cable and "
                              "`rpicam-hello --list-cameras`") from e
        try:
            self._configure(cam)
            cam.start()
        except (RuntimeError, ValueError, OSError) as e:
            cam.close()
            raise CameraError(f"picamera: cannot start it ({e})") from e
        self._cam = cam

    def _make(self):
        if self.factory is not None:
            return self.factory()
        from picamera2 import Picamera2  # here, not at module top: it imports libcamera

        return Picamera2()

    def _configure(self, cam):
        # RGB888 is stored B, G, R: OpenCV's order, as every source here yields.
        main = {"size": self.size, "format": "RGB888"}
        controls = {"FrameRate": self.fps}
        if self.feed is None:
            cam.configure(cam.create_video_configuration(main=main, controls=controls))
            return
        lores_size = self.feed.stream_size(*self.size)
        error = None
        for fmt in self.LORES_FORMATS:
            config = cam.create_video_configuration(main=main, lores={"size": lores_size, "format": fmt},
                                                    controls=controls)
            try:
                cam.configure(config)
            except RuntimeError as e:  # this camera's lores stream does not do this format
                error = e
                continue
            self.lores_format = fmt
            return
        raise error

    def grab(self, clock):
        """Captures the next frame; returns its timestamp on `clock`."""
        self._release()
        try:
            self._request = self._cam.capture_request()
        except (RuntimeError, OSError) as e:
            raise CameraError(f"picamera: capture failed ({e})") from e
        return clock()

    def retrieve(self):
        """The captured frame: BGR pixels, or with a feed a Capture of the model's input and the full frame."""
        if self.feed is None:
            image = self._request.make_array("main")
            self._release()
            return image
        lores = self._request.make_array("lores")
        if self.lores_format == "YUV420":
            # Planes of `stride` columns (stride >= width): convert them whole, then cut the padding off.
            width = self._cam.camera_config["lores"]["size"][0]
            lores = cv2.cvtColor(lores, cv2.COLOR_YUV2RGB_I420)[:, :width]
        pixels = self.feed.from_stream(lores, *self.size)
        return Capture(functools.partial(self._full, self._request), pixels)

    def _full(self, request):
        # The same instant while its request is held (until the next grab); a fresh frame after.
        if request is self._request:
            return request.make_array("main")
        return self._cam.capture_array("main") if self._cam is not None else None

    def _release(self):
        if self._request is not None:
            request, self._request = self._request, None
            request.release()

    def close(self):
        """Stops and releases the camera; safe twice."""
        if self._cam is not None:
            self._release()
            cam, self._cam = self._cam, None
            try:
                cam.stop()
            finally:
                cam.close()


class Backoff:
    """Retry delays: `first` seconds, doubling up to `longest`."""

    def __init__(self, first=0.5, longest=30.0):
        self.first = first
        self.longest = longest

    def delay(self, attempt):
        """Seconds to wait after the `attempt`-th failure in a row (1-based)."""
        return min(self.longest, self.first * 2 ** (attempt - 1))


class Reconnecting(Source):
    """A live source over a camera: reopens it with backoff whenever it fails.

    Frames are stamped on `clock` and capped at the camera's fps (frames grabbed early are not
    decoded); indices keep counting across reconnects. After each failure a Gap is yielded, then
    `sleep(delay)` runs; a true result from it (a set stop event's `wait`) ends the iteration.
    """

    live = True

    def __init__(self, camera, clock=time.time, sleep=time.sleep, backoff=None):
        self.camera = camera
        self.clock = clock
        self.sleep = sleep
        self.backoff = backoff or Backoff()
        self._index = 0

    def __str__(self):
        return str(self.camera)

    def frames(self):
        """Yields Frames while the camera works and a Gap after each failure; never ends by itself."""
        failures = 0
        while True:
            try:
                self.camera.open()
                log.info("%s opened", self.camera)
                for frame in self._read():
                    failures = 0
                    yield frame
            except CameraError as e:
                reason = str(e)
            finally:
                self.camera.close()
            failures += 1
            delay = self.backoff.delay(failures)
            yield Gap(self.clock(), reason, failures, delay)
            if self.sleep(delay):
                return

    def _read(self):
        cap = RateCap(self.camera.fps)
        while True:
            ts = self.camera.grab(self.clock)
            if not cap.keep(ts):
                continue
            image = self.camera.retrieve()
            if image is None:
                self.skipped += 1  # one corrupt frame is not a lost camera
                continue
            if isinstance(image, Capture):
                yield Frame(ts, self._index, image.image, image.pixels)
            else:
                yield Frame(ts, self._index, image)
            self._index += 1

    def close(self):
        self.camera.close()
