"""What a running door looks like from outside: door state, last events, rates, CPU and health.

`LoopView` reads a DoorLoop's snapshots (`DoorLoop.snapshot()`) and subscribes to its events, nothing
else; the status page, /health and /metrics ask it, from their own threads. Nothing here runs per
frame: numbers are computed when someone asks, so a door nobody watches pays nothing.
"""

import collections
import os
import threading
import time


class Rates:
    """Frames per second and CPU share, measured between two snapshots at least `period` seconds apart.

    Args:
      start: the loop clock's reading to measure the first rates from (a snapshot's `time`).
      cpu: process CPU seconds so far (all threads).
      period: shortest interval to measure over (a page reloaded twice in a row keeps its numbers).
    """

    def __init__(self, start, cpu=time.process_time, period=1.0):
        self.cpu = cpu
        self.period = period
        self._last = (start, 0, 0, cpu())
        self._rates = {"fps": 0.0, "classified_fps": 0.0, "cpu_percent": 0.0}
        self._lock = threading.Lock()

    def sample(self, snap):
        """Returns {fps, classified_fps, cpu_percent} (100 % = one core) as of a LoopSnapshot."""
        now, frames, classified, cpu = snap.time, snap.frames, snap.classified, self.cpu()
        with self._lock:
            then, frames0, classified0, cpu0 = self._last
            dt = now - then
            if dt >= self.period:
                self._rates = {"fps": (frames - frames0) / dt, "classified_fps": (classified - classified0) / dt,
                               "cpu_percent": 100.0 * (cpu - cpu0) / dt}
                self._last = (now, frames, classified, cpu)
            return dict(self._rates)


class LoopView:
    """A read-only view of a DoorLoop for other threads: its snapshots plus the events it remembers.

    Args:
      loop: anything with `snapshot()` (a LoopSnapshot) and `subscribe`/`unsubscribe` (a DoorLoop).
      keep: how many recent events to remember.
      stall_seconds: /health fails when the loop handled no frame (and no camera gap) for this long.
    """

    def __init__(self, loop, keep=20, stall_seconds=10.0):
        self.loop = loop
        self.stall_seconds = float(stall_seconds)
        self.rates = Rates(loop.snapshot().time)
        self._events = collections.deque(maxlen=keep)
        self._lock = threading.Lock()
        loop.subscribe(self.on_event)

    def close(self):
        """Stops listening to the loop's events; safe twice."""
        self.loop.unsubscribe(self.on_event)

    def on_event(self, record):
        """Takes one event from the loop (called in the loop's thread)."""
        with self._lock:
            self._events.append((time.time(), record))

    def snapshot(self):
        """The loop's LoopSnapshot now."""
        return self.loop.snapshot()

    def recent_events(self):
        """The remembered events, newest first, each with a `wall` key (time.time() when it happened)."""
        with self._lock:
            return [{**record, "wall": wall} for wall, record in reversed(self._events)]

    def health(self, snap=None):
        """(ok, problems): ok is False while the camera is lost, the loop stalls, or it is not running."""
        snap = self.snapshot() if snap is None else snap
        problems = []
        if snap.running is None:
            problems.append("not started yet")
        elif not snap.running:
            problems.append(f"stopped ({snap.stop_reason})")
        if snap.camera_lost:
            problems.append(f"camera lost: {snap.camera_lost}")
        idle = snap.seconds_since_frame
        if snap.running and idle > self.stall_seconds:
            problems.append(f"loop stalled: no frame for {idle:.1f} s (limit {self.stall_seconds:g} s)")
        return not problems, problems

    def health_body(self):
        """(ok, the /health JSON): ok, problems, warnings (a broker away: the door is still healthy), door, counters."""
        snap = self.snapshot()
        ok, problems = self.health(snap)
        return ok, {"ok": ok, "problems": problems, "warnings": snap.warnings(), "door": snap.door,
                    **snap.counters()}

    def status(self):
        """Everything the page and /status.json show, as a JSON-ready dict."""
        snap = self.snapshot()
        ok, problems = self.health(snap)
        counters = snap.counters()
        return {
            "ok": ok,
            "problems": problems,
            "warnings": snap.warnings(),
            "door": snap.door,
            "last_animal": snap.last_animal.to_dict() if snap.last_animal else None,
            "counters": counters,
            "rates": self.rates.sample(snap),
            "load": os.getloadavg() if hasattr(os, "getloadavg") else None,
            "cpus": os.cpu_count(),
            "motion": snap.motion.to_dict() if snap.motion else None,
            "events": self.recent_events(),
            "reporters": dict(snap.reporters),
            "time": time.time(),
        }
