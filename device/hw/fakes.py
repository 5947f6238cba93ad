"""Fakes shipped beside the real hardware, for tests and demos: a clock and a camera that drops out.

    clock = FakeClock()
    camera = FakeCamera(["fail", 5, "fail", 3], clock=clock, fps=10)
    source = Reconnecting(camera, clock=clock, sleep=clock.sleep)

gives a failed open, five frames, a loss, a failed reopen, three frames, a loss, and then fails
every open, with the clock advanced by each frame interval and each backoff sleep: nothing waits.
"""


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
