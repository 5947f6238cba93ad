"""Motion gating: classify a frame only when something moves in the region of interest.

An empty porch is most of a door's life; running the model on it burns CPU (and, on a Pi,
heat) for nothing. `MotionGate` compares each frame, shrunk to a small grey image, with a
running-average background and lets a frame through when enough of it changed. A frame is
still classified every `heartbeat_seconds` (a camera that froze on one picture). The background
is learned only where nothing moves (selective update), so a visitor never fades into it within a
minute and leaves no ghost behind: a visitor standing still stays motion, the empty porch after it
left is idle at once, and a raccoon following the dog through an open door is motion too.
"""

import collections
import logging
import math

import cv2
import numpy as np

from tl.device.model.contract import crop_roi

log = logging.getLogger(__name__)

# Width the region of interest is shrunk to before comparing: enough for an animal, cheap on a Pi.
WORK_WIDTH = 160
# Time constant of the background average: lighting drift and a visitor who stays put fade into
# it over a few seconds (then the heartbeat keeps looking), sensor noise never stands out of it.
BACKGROUND_SECONDS = 3.0
# Blur before comparing, so single noisy pixels and JPEG blocks do not count as motion.
BLUR = (5, 5)
# Selective update: where something moves, the background learns this slowly instead.
FOREGROUND_SECONDS = 60.0
DILATE = np.ones((5, 5), np.uint8)
# OpenCV subtractors: time constant of their learning rate.
SUBTRACTOR_SECONDS = 10.0
BACKGROUNDS = ("average", "selective", "mog2", "knn")
DEFAULT_BACKGROUND = "selective"
# Classify every frame while the door is open (True), or only what the gate lets through: with a background
# that does not learn visitors, a gated frame is an empty porch, and the policy still closes the door on time
# on gated frames. Measured on door scenes (benchmarks/door_scenes.md): the same dogs in time and wrong
# opens, 49 % of frames classified instead of 60-63 %.
WATCH_OPEN = False

Verdict = collections.namedtuple("Verdict", ["classify", "why", "changed"])
Verdict.__doc__ = "A gate's answer for one frame: classify it?, why (motion/heartbeat/busy/first/idle), changed share."


class MotionGate:
    """Decides per frame whether the model should look at it.

    Args:
      area: share of the region (0..1) whose pixels must change for the frame to count as motion.
      delta: grey levels (1..255) a pixel must differ from the background by to count as changed.
      heartbeat_seconds: classify at least this often, motion or not.
      roi: (x, y, w, h) region of interest in frame pixels, or None for the whole frame.
      background: how the empty porch is learned, one of BACKGROUNDS (see `make_background`).
      watch_open: classify every frame while the door is open (`busy`), moving or not.

    Attributes:
      counts: {why: frames} over the gate's life (motion, heartbeat, busy, first, idle).
    """

    def __init__(self, area=0.01, delta=20, heartbeat_seconds=2.0, roi=None, background=DEFAULT_BACKGROUND,
                 watch_open=WATCH_OPEN):
        self.area = float(area)
        self.delta = int(delta)
        self.heartbeat_seconds = float(heartbeat_seconds)
        self.roi = roi
        self.background = background
        self.watch_open = watch_open
        self.counts = collections.Counter()
        self._model = make_background(background, self.delta)
        self._seen_ts = None
        self._classified_ts = None

    def __str__(self):
        return (f"motion gate: {self.area:.1%} of the ROI changing by > {self.delta} grey levels from a "
                f"{self.background} background, heartbeat {self.heartbeat_seconds:g} s")

    def check(self, image, ts, busy=False):
        """Looks at one BGR frame taken at source time `ts`; returns a Verdict.

        Args:
          image: the frame (BGR uint8).
          ts: its source timestamp in seconds.
          busy: classify regardless (the door is open).
        """
        small = shrink(image, self.roi)
        dt = ts - self._seen_ts if self._seen_ts is not None else None
        changed = self._model.apply(small, dt)
        self._seen_ts = ts
        why = decide(changed >= self.area, busy and self.watch_open, ts, self._classified_ts, self.heartbeat_seconds)
        self.counts[why] += 1
        if why != "idle":
            self._classified_ts = ts
        return Verdict(why != "idle", why, changed)


def decide(moving, busy, ts, classified_ts, heartbeat_seconds):
    """Why a frame is classified (first, motion, busy, heartbeat), or "idle"; pure, so a replay can redo it.

    Args:
      moving: the background model saw motion in the frame.
      busy: the door is open.
      ts: the frame's time; classified_ts: when a frame was last classified (None: never).
    """
    if classified_ts is None:
        return "first"
    if moving:
        return "motion"
    if busy:
        return "busy"
    since = ts - classified_ts
    # A clock stepped back (NTP on a Pi without a real-time clock) counts as a heartbeat too.
    if since >= heartbeat_seconds or since < 0:
        return "heartbeat"
    return "idle"


def _alpha(dt, seconds):
    # Frame-rate independent: the background moves the same distance per second at 2 or 30 fps.
    return 1.0 - math.exp(-dt / seconds) if dt and dt > 0 else 0.05


class RunningAverage:
    """The whole frame drifts into one running average: a visitor fades in, and its ghost out again, over seconds."""

    def __init__(self, delta, selective=False):
        self.delta = delta
        self.selective = selective
        self._mean = None

    def apply(self, small, dt):
        """Updates the background with a shrunk grey frame; returns the share of pixels that differ from it."""
        if self._mean is None:
            self._mean = small.copy()
            return 1.0
        moving = cv2.absdiff(small, self._mean) > self.delta
        if not self.selective:
            cv2.accumulateWeighted(small, self._mean, _alpha(dt, BACKGROUND_SECONDS))
            return float(np.count_nonzero(moving)) / moving.size
        # Selective update: where something moves (and a margin round it) the porch is hidden, so it is
        # learned only very slowly (a parked pram still fades in); elsewhere at the usual pace.
        fg = cv2.dilate(moving.astype(np.uint8), DILATE)
        cv2.accumulateWeighted(small, self._mean, _alpha(dt, BACKGROUND_SECONDS), mask=1 - fg)
        cv2.accumulateWeighted(small, self._mean, _alpha(dt, FOREGROUND_SECONDS), mask=fg)
        return float(np.count_nonzero(moving)) / moving.size


class Subtractor:
    """OpenCV's MOG2 or KNN background subtractor, learning at a frame-rate independent pace."""

    def __init__(self, delta, kind):
        if kind == "mog2":
            self._sub = cv2.createBackgroundSubtractorMOG2(history=500, varThreshold=16, detectShadows=False)
        else:
            self._sub = cv2.createBackgroundSubtractorKNN(history=500, dist2Threshold=float(delta) ** 2,
                                                          detectShadows=False)
        self._first = True

    def apply(self, small, dt):
        """Updates the model with a shrunk grey frame; returns the share of foreground pixels."""
        fg = self._sub.apply(small.astype(np.uint8), learningRate=1.0 if self._first else _alpha(dt, SUBTRACTOR_SECONDS))
        first, self._first = self._first, False
        return 1.0 if first else float(np.count_nonzero(fg)) / fg.size


def make_background(kind, delta):
    """A background model by name: average (running average), selective (one that does not learn a
    visitor), mog2 or knn (OpenCV's subtractors)."""
    if kind in ("average", "selective"):
        return RunningAverage(delta, selective=kind == "selective")
    if kind in ("mog2", "knn"):
        return Subtractor(delta, kind)
    raise ValueError(f"background {kind!r}: one of {', '.join(BACKGROUNDS)}")


def shrink(image, roi=None, width=WORK_WIDTH):
    """Crops `image` to `roi`, shrinks it to `width` pixels wide, and returns it blurred grey (float32)."""
    if roi is not None:
        image = crop_roi(image, roi)  # the model's own crop: the gate watches what the model sees
    h, w = image.shape[:2]
    if w > width:
        image = cv2.resize(image, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    return cv2.GaussianBlur(grey, BLUR, 0).astype(np.float32)


def make_gate(cfg, live):
    """Builds the MotionGate a RunConfig asks for, or None when gating is off.

    Gating is on by default for live cameras and off for replays (a replay is usually a check of
    the model, where every frame should be scored); `motion = true` turns it on for both.
    """
    enabled = cfg.motion if cfg.motion is not None else live
    if not enabled:
        return None
    gate = MotionGate(cfg.motion_area, cfg.motion_delta, cfg.heartbeat_seconds, cfg.roi)
    log.info("%s", gate)
    return gate
