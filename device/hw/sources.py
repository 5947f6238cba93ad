"""Frame sources: replays (a folder of frames, a video file), and `open_source`, which picks one.

Every source (see `tl.device.hw.frames.Source`) yields `Frame(ts, index, image)` with `image` a BGR
uint8 array; live cameras (`tl.device.hw.cameras`) also yield `Gap`s while the camera is away.
"""

import functools
import logging
import re
import time
from pathlib import Path

import cv2
import numpy as np

from tl.device.errors import ConfigError, DataError, ImageError
from tl.device.hw import cameras
from tl.device.hw.feed import ModelFeed
from tl.device.hw.frames import Frame, RateCap, Source
from tl.device.model.image import check_header, load_image, read_bytes

log = logging.getLogger(__name__)

PICAMERA_NAMES = ("picamera", "picamera2")
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


class FolderSource(Source):
    """A folder of frames replayed in name order, frame i at i / fps.

    Files that do not decode (or break the pixel limits of `tl.device.model.image`) are logged
    with the reason, counted in `skipped` and passed over (their index and timestamp stay
    reserved, so the others keep theirs). Sub-folders are not frames; broken links are. Given a
    ModelFeed, JPEGs much larger than the model's input are decoded at reduced size into the model's
    input (`Frame.pixels`); the full-size frame is decoded only when something asks for it (a snapshot).
    """

    def __init__(self, folder, fps=10.0, feed=None):
        self.folder = Path(folder)
        self.fps = float(fps)
        self.feed = feed
        self.files = sorted(p for p in self.folder.iterdir() if not p.is_dir() and not p.name.startswith("."))
        if not self.files:
            raise DataError(f"source folder {self.folder} holds no frames; put one image per frame in it")
        self.skipped = 0

    def __str__(self):
        return f"folder {self.folder} ({len(self.files)} frames at {self.fps:g} fps)"

    def frames(self):
        """Yields a Frame per decodable file."""
        for i, path in enumerate(self.files):
            pixels = self._reduced(path) if self.feed is not None else None
            if pixels is not None:
                yield Frame(i / self.fps, i, functools.partial(_decode_file, path), pixels)
                continue
            image = _decode_file(path)
            if image is None:
                self.skipped += 1
                continue
            yield Frame(i / self.fps, i, image)


    def _reduced(self, path):
        try:  # the same file and pixel-limit checks as every decode (tl.device.model.image)
            data = np.frombuffer(read_bytes(path), dtype=np.uint8)
            check_header(data, path.name)
        except ImageError:
            return None  # the full decode says why, and counts it
        factor = self.feed.jpeg_factor(data)
        if factor is None:
            self.feed = None  # frames in a folder are alike: no gain here, stop looking
            return None
        return self.feed.from_jpeg(data, factor)


def _decode_file(path):
    # Decoded as training photos are (tl.device.model.image), but kept in BGR like camera frames.
    try:
        return load_image(path, bgr=True)
    except ImageError as e:
        log.warning("frame %s: %s; skipped", path, e.reason)
        return None


class VideoSource(Source):
    """A video file replayed on its own timestamps: frame i at i / (the file's fps).

    Args:
      path: the video file.
      fps: at most this many frames per second are yielded (the others are skipped without
        decoding), so a 30 fps recording is judged as a 10 fps camera would see it; also the
        frame rate assumed when the file does not state one. None: every frame.
    """

    def __init__(self, path, fps=None):
        self.path = Path(path)
        self._cap = cv2.VideoCapture(str(self.path))
        if not self._cap.isOpened():
            self._cap.release()
            raise DataError(f"video {self.path}: OpenCV cannot open it (not a video, or a codec it lacks); "
                            "convert it with ffmpeg -i IN -c:v mjpeg OUT.avi, or extract frames into a folder")
        native = self._cap.get(cv2.CAP_PROP_FPS)
        self.native_fps = native if 0 < native < 1000 else float(fps or 10.0)
        self.fps = fps
        self.skipped = 0

    def __str__(self):
        return f"video {self.path} ({self.native_fps:g} fps)"

    def frames(self):
        """Yields a Frame per kept video frame; ends at the end of the file."""
        # A file's timestamps are exact: only rounding needs tolerating.
        cap = RateCap(self.fps, tolerance=1e-6)
        i = -1
        while self._cap is not None and self._cap.grab():
            i += 1
            ts = i / self.native_fps
            if not cap.keep(ts):
                continue
            ok, image = self._cap.retrieve()
            if not ok or image is None:
                self.skipped += 1
                continue
            yield Frame(ts, i, image)

    def close(self):
        if self._cap is not None:
            self._cap.release()
            self._cap = None


def pace(frames, clock=time.monotonic, sleep=time.sleep):
    """Replays `frames` in real time: each is yielded at (start + its ts) on `clock`.

    Args:
      frames: an iterator of Frames.
      clock: returns seconds.
      sleep: waits a number of seconds; a true result (as `threading.Event.wait` returns once
        the event is set) ends the replay.
    """
    start = None
    for frame in frames:
        if start is None:
            start = clock() - frame.ts
        delay = start + frame.ts - clock()
        if delay > 0 and sleep(delay):
            return
        yield frame


def classify_source(text):
    """Tells what kind of source `text` names: 'picamera', 'camera', 'folder' or 'video'.

    Raises:
      ConfigError: when it names none of them.
    """
    text = str(text).strip()
    if text.lower() in PICAMERA_NAMES:
        return "picamera"
    if text.isdigit() or _URL.match(text) or text.startswith("/dev/video"):
        return "camera"
    path = Path(text)
    if path.is_dir():
        return "folder"
    if path.is_file():
        return "video"
    raise ConfigError(f"source {text!r} is neither a camera nor an existing file or folder; use picamera, "
                      "a camera index (0), a video file, an rtsp:// URL or a folder of frames")


def open_source(text, fps=10.0, capture_size=(640, 480), sleep=time.sleep, clock=time.time, spec=None, roi=None):
    """Opens the source `text` names (see `classify_source`).

    Live cameras are wrapped so that they reconnect with backoff (see `cameras.Reconnecting`);
    a camera that cannot be opened at start is retried the same way.

    Args:
      text: picamera, a camera index, /dev/videoN, a URL, a video file or a folder of frames.
      fps: the folder's frame rate; a cap for videos and cameras.
      capture_size: (width, height) asked of live cameras.
      sleep: how live sources wait between retries (a true result stops them).
      clock: the clock live frames are stamped with.
      spec, roi: the model's InputSpec and the ROI; given, the picamera and folders of JPEGs hand
        the model its input at its size (`tl.device.hw.feed`).
    """
    kind = classify_source(text)
    feed = ModelFeed(spec, roi) if spec is not None else None
    if kind == "folder":
        return FolderSource(text, fps, feed)
    if kind == "video":
        return VideoSource(text, fps)
    if kind == "picamera":
        camera = cameras.PiCamera(fps, capture_size, feed=feed)
    else:
        target = int(text) if str(text).strip().isdigit() else str(text).strip()
        camera = cameras.OpenCVCamera(target, fps, capture_size)
    return cameras.Reconnecting(camera, clock=clock, sleep=sleep)
