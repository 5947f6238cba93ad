"""Motion gating: classify a frame only when something moves in the region of interest.

An empty porch is most of a door's life; running the model on it burns CPU (and, on a Pi,
heat) for nothing. `MotionGate` compares each frame, shrunk to a small grey image, with a
running-average background and lets a frame through when enough of it changed. A frame is
still classified every `heartbeat_seconds` (a visitor standing still, a camera that froze on
one picture), and every frame is classified while the door is open, so it closes on time and a
raccoon following the dog still locks it.
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

Verdict = collections.namedtuple("Verdict", ["classify", "why", "changed"])
Verdict.__doc__ = "A gate's answer for one frame: classify it?, why (motion/heartbeat/busy/first/idle), changed share."


class MotionGate:
    """Decides per frame whether the model should look at it.

    Args:
      area: share of the region (0..1) whose pixels must change for the frame to count as motion.
      delta: grey levels (1..255) a pixel must differ from the background by to count as changed.
      heartbeat_seconds: classify at least this often, motion or not.
      roi: (x, y, w, h) region of interest in frame pixels, or None for the whole frame.

    Attributes:
      counts: {why: frames} over the gate's life (motion, heartbeat, busy, first, idle).
    """

    def __init__(self, area=0.01, delta=20, heartbeat_seconds=2.0, roi=None):
        self.area = float(area)
        self.delta = int(delta)
        self.heartbeat_seconds = float(heartbeat_seconds)
        self.roi = roi
        self.counts = collections.Counter()
        self._background = None
        self._seen_ts = None
        self._classified_ts = None

    def __str__(self):
        return (f"motion gate: {self.area:.1%} of the ROI changing by > {self.delta} grey levels, "
                f"heartbeat {self.heartbeat_seconds:g} s")

    def check(self, image, ts, busy=False):
        """Looks at one BGR frame taken at source time `ts`; returns a Verdict.

        Args:
          image: the frame (BGR uint8).
          ts: its source timestamp in seconds.
          busy: classify regardless (the door is open).
        """
        small = shrink(image, self.roi)
        if self._background is None:
            self._background = small.astype(np.float32)
            changed = 1.0
        else:
            changed = changed_share(small, self._background, self.delta)
            self._update_background(small, ts)
        self._seen_ts = ts
        why = self._why(changed, ts, busy)
        self.counts[why] += 1
        if why != "idle":
            self._classified_ts = ts
        return Verdict(why != "idle", why, changed)

    def _why(self, changed, ts, busy):
        if self._classified_ts is None:
            return "first"
        if changed >= self.area:
            return "motion"
        if busy:
            return "busy"
        since = ts - self._classified_ts
        # A clock stepped back (NTP on a Pi without a real-time clock) counts as a heartbeat too.
        if since >= self.heartbeat_seconds or since < 0:
            return "heartbeat"
        return "idle"

    def _update_background(self, small, ts):
        dt = max(0.0, ts - self._seen_ts)
        # Frame-rate independent: the background moves the same distance per second at 2 or 30 fps.
        alpha = 1.0 - math.exp(-dt / BACKGROUND_SECONDS) if dt > 0 else 0.05
        cv2.accumulateWeighted(small, self._background, alpha)


def shrink(image, roi=None, width=WORK_WIDTH):
    """Crops `image` to `roi`, shrinks it to `width` pixels wide, and returns it blurred grey (float32)."""
    if roi is not None:
        image = crop_roi(image, roi)  # the model's own crop: the gate watches what the model sees
    h, w = image.shape[:2]
    if w > width:
        image = cv2.resize(image, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    return cv2.GaussianBlur(grey, BLUR, 0).astype(np.float32)


def changed_share(small, background, delta):
    """Share of pixels (0..1) of `small` that differ from `background` by more than `delta`."""
    diff = cv2.absdiff(small, background)
    return float(np.count_nonzero(diff > delta)) / diff.size


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
