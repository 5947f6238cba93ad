"""Live cameras (OpenCV: USB, /dev/video, RTSP; picamera2), and reconnecting with backoff.

A camera here is small: `open()`, `grab(clock) -> ts` (waits for the next frame and stamps it),
`retrieve() -> BGR image or None` (decodes it; skipped frames are never decoded) and `close()`. The
`Reconnecting` source turns one into frames, and into `Gap`s while it is away.
"""

import importlib.util
import logging
import time

import cv2

from tl.device.errors import CameraError, ConfigError
from tl.device.hw.frames import Frame, Gap, RateCap, Source

log = logging.getLogger(__name__)


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

    Args:
      fps: the sensor frame rate (FrameRate control).
      size: (width, height) of the frames.

    Raises:
      ConfigError: at once when picamera2 is not installed (no retry fixes that).
    """

    def __init__(self, fps=10.0, size=(640, 480)):
        if importlib.util.find_spec("picamera2") is None:
            raise ConfigError("source picamera: picamera2 is not installed; on Raspberry Pi OS run "
                              "`sudo apt install python3-picamera2` and create the venv with --system-site-packages")
        self.fps = float(fps)
        self.size = tuple(size)
        self._cam = None
        self._image = None

    def __str__(self):
        return "picamera"

    def open(self):
        """Starts the camera; raises CameraError with what to check."""
        from picamera2 import Picamera2  # here, not at module top: it imports libcamera

        try:
            cam = Picamera2()
        except (RuntimeError, IndexError, OSError) as e:
            raise CameraError(f"picamera: no camera found ({e}); check the ribbon cable and "
                              "`rpicam-hello --list-cameras`") from e
        try:
            # RGB888 is stored B, G, R: OpenCV's order, as every source here yields.
            config = cam.create_video_configuration(
                main={"size": self.size, "format": "RGB888"}, controls={"FrameRate": self.fps})
            cam.configure(config)
            cam.start()
        except (RuntimeError, ValueError, OSError) as e:
            cam.close()
            raise CameraError(f"picamera: cannot start it ({e})") from e
        self._cam = cam

    def grab(self, clock):
        """Captures the next frame; returns its timestamp on `clock`."""
        try:
            self._image = self._cam.capture_array("main")
        except (RuntimeError, OSError) as e:
            raise CameraError(f"picamera: capture failed ({e})") from e
        return clock()

    def retrieve(self):
        """Returns the captured frame (already BGR pixels)."""
        return self._image

    def close(self):
        """Stops and releases the camera; safe twice."""
        if self._cam is not None:
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
            yield Frame(ts, self._index, image)
            self._index += 1

    def close(self):
        self.camera.close()
