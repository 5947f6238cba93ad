"""What a running door looks like from outside: door state, last events, rates, CPU and health.

`LoopView` listens to a DoorLoop's events and reads its attributes; the status page, /health,
/metrics and MQTT all ask it, from their own threads. Nothing here runs per frame: numbers are
computed when someone asks, so a door nobody watches pays nothing.
"""

import collections
import os
import threading
import time

from tl.device.door.policy import LOCKED

# Decisions about a visitor: their label is the "last animal" Home Assistant shows.
VISITOR_EVENTS = ("door_open", "denied")


class Rates:
    """Frames per second and CPU share, measured between two looks at least `period` seconds apart.

    Args:
      clock: a monotonic clock.
      cpu: process CPU seconds so far (all threads).
      period: shortest interval to measure over (a page reloaded twice in a row keeps its numbers).
    """

    def __init__(self, clock=time.monotonic, cpu=time.process_time, period=1.0):
        self.clock = clock
        self.cpu = cpu
        self.period = period
        self._last = (clock(), 0, 0, cpu())
        self._rates = {"fps": 0.0, "classified_fps": 0.0, "cpu_percent": 0.0}
        self._lock = threading.Lock()

    def sample(self, frames, classified):
        """Returns {fps, classified_fps, cpu_percent} (100 % = one core) as of now."""
        now, cpu = self.clock(), self.cpu()
        with self._lock:
            then, frames0, classified0, cpu0 = self._last
            dt = now - then
            if dt >= self.period:
                self._rates = {"fps": (frames - frames0) / dt, "classified_fps": (classified - classified0) / dt,
                               "cpu_percent": 100.0 * (cpu - cpu0) / dt}
                self._last = (now, frames, classified, cpu)
            return dict(self._rates)


class LoopView:
    """A read-only view of a DoorLoop for other threads.

    Args:
      loop: the DoorLoop (its EventLog gets a listener).
      source: the frame source (its `skipped` count is read live), or None.
      keep: how many recent events to remember.
      stall_seconds: /health fails when the loop handled no frame (and no camera gap) for this long.

    Attributes:
      extras: {name: callable returning a dict}: more status (MQTT's connection, queue).
    """

    def __init__(self, loop, source=None, keep=20, stall_seconds=10.0):
        self.loop = loop
        self.source = source
        self.stall_seconds = float(stall_seconds)
        self.extras = {}
        self.rates = Rates(loop.clock)
        self._events = collections.deque(maxlen=keep)
        self._last_animal = None
        self._running = None  # None: not started yet; then True / False
        self._stop_reason = None
        self._lock = threading.Lock()
        loop.events.listeners.append(self.on_event)

    def close(self):
        """Stops listening to the loop's events; safe twice."""
        if self.on_event in self.loop.events.listeners:
            self.loop.events.listeners.remove(self.on_event)

    def on_event(self, record):
        """Takes one event from the EventLog (called in the loop's thread)."""
        with self._lock:
            self._events.append((time.time(), record))
            if record["event"] in VISITOR_EVENTS and record["label"]:
                self._last_animal = {"label": record["label"], "score": record["score"], "event": record["event"],
                                     "ts": record["ts"], "wall": time.time()}
            if record["event"] == "start":
                self._running = True
            elif record["event"] == "stop":
                self._running, self._stop_reason = False, record["reason"]

    def door_state(self):
        """'open', 'closed' or 'locked' (closed, and a denied class was seen recently)."""
        if self.loop.door.is_open:
            return "open"
        return "locked" if self.loop.policy.state == LOCKED else "closed"

    def last_animal(self):
        """{label, score, event, ts, wall} of the last door_open/denied, or None."""
        with self._lock:
            return dict(self._last_animal) if self._last_animal else None

    def recent_events(self):
        """The remembered events, newest first, each with a `wall` key (time.time() when it happened)."""
        with self._lock:
            return [{**record, "wall": wall} for wall, record in reversed(self._events)]

    def counters(self):
        """{frames, classified, skipped_motion, unreadable, events_lost, invoke_ms} so far."""
        s = self.loop.stats
        return {"frames": s.frames, "classified": s.classified, "skipped_motion": s.skipped_motion,
                "unreadable": self.source.skipped if self.source is not None else s.skipped,
                "events_lost": self.loop.events.failures, "invoke_ms": self.loop.classifier.invoke_ms}

    def health(self):
        """(ok, problems): ok is False while the camera is lost, the loop stalls, or it is not running."""
        problems = []
        with self._lock:
            running, stop_reason = self._running, self._stop_reason
        if running is None:
            problems.append("not started yet")
        elif not running:
            problems.append(f"stopped ({stop_reason})")
        if self.loop.camera_lost:
            problems.append(f"camera lost: {self.loop.camera_lost}")
        idle = self.loop.clock() - self.loop.alive_at
        if running and idle > self.stall_seconds:
            problems.append(f"loop stalled: no frame for {idle:.1f} s (limit {self.stall_seconds:g} s)")
        return not problems, problems

    def status(self):
        """Everything the page and /status.json show, as a JSON-ready dict."""
        ok, problems = self.health()
        counters = self.counters()
        warnings = []
        if counters["events_lost"]:
            warnings.append(f"{counters['events_lost']} events not written to the events file (disk full?)")
        gate = self.loop.gate
        return {
            "ok": ok,
            "problems": problems,
            "warnings": warnings,
            "door": self.door_state(),
            "last_animal": self.last_animal(),
            "counters": counters,
            "rates": self.rates.sample(counters["frames"], counters["classified"]),
            "load": os.getloadavg() if hasattr(os, "getloadavg") else None,
            "cpus": os.cpu_count(),
            "motion": None if gate is None else {"area": gate.area, "delta": gate.delta,
                                                 "heartbeat_seconds": gate.heartbeat_seconds},
            "events": self.recent_events(),
            "extras": {name: get() for name, get in self.extras.items()},
            "time": time.time(),
        }
