"""What frame sources yield, and the context-manager plumbing they share."""

import collections


class Frame:
    """One frame: source timestamp in seconds, source frame index, BGR uint8 pixels.

    A source that already made the model's input (a camera stream at the model's size, a JPEG
    decoded at reduced size) passes it as `pixels`: RGB uint8 at the model's size, ROI applied.
    Its `image` may then be a zero-argument function: the full-size frame is made only when
    something reads `image` (a snapshot, the motion gate, the status page).
    """

    __slots__ = ("ts", "index", "pixels", "_image")

    def __init__(self, ts, index, image, pixels=None):
        self.ts = ts
        self.index = index
        self.pixels = pixels
        self._image = image

    @property
    def image(self):
        """The full-size BGR frame (made on first use when the source deferred it)."""
        if callable(self._image):
            self._image = self._image()
        return self._image

    def __repr__(self):
        return f"Frame(ts={self.ts!r}, index={self.index!r})"


Gap = collections.namedtuple("Gap", ["ts", "reason", "attempt", "retry_in"])
Gap.__doc__ = "A live camera is away: when, why, the how-many-th failed attempt, seconds to the next."


class Source:
    """Base of the frame sources.

    Attributes:
      live: True for cameras (frames stamped by `clock`), False for replays (stamped i / fps).
      clock: for live sources, the clock their timestamps come from; None for replays.
      skipped: frames that could not be decoded and were passed over.
    """

    live = False
    clock = None
    skipped = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def frames(self):
        """Yields Frames (and, for live sources, Gaps)."""
        raise NotImplementedError

    def close(self):
        """Releases the source; safe to call twice."""


class RateCap:
    """Keeps at most `fps` frames per second of a stream, judged on the stream's own timestamps.

    Args:
      fps: the cap; None or 0 keeps every frame.
      tolerance: fraction of a frame interval a frame may come early and still be kept
        (camera timestamps jitter; a file's do not).
    """

    def __init__(self, fps, tolerance=0.25):
        self.step = 1.0 / fps if fps else 0.0
        self.tolerance = self.step * tolerance
        self.due = None

    def keep(self, ts):
        """Says whether the frame at `ts` is kept, and if so moves the next due time on."""
        if self.due is not None and ts < self.due - self.tolerance:
            return False
        if self.due is None:
            self.due = ts
        # After a stall (ts far past due) the schedule restarts from ts instead of bursting.
        self.due = max(self.due + self.step, ts + self.step - self.tolerance)
        return True
