"""What a running door looks like from outside, as one frozen value: `DoorLoop.snapshot()` returns it.

Observers (the status page, /health, /metrics, MQTT, the periodic log line) read these snapshots
and subscribe to events; they never reach into the loop's parts. A snapshot is made when someone
asks, so a door nobody watches pays nothing per frame.
"""

import dataclasses
import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

# Decisions about a visitor: their label is the "last animal" the page and Home Assistant show.
VISITOR_EVENTS = ("door_open", "denied")


@dataclasses.dataclass
class RunStats:
    """What a run did.

    Attributes:
      frames: frames read (classified + skipped_motion).
      classified: frames the model looked at.
      skipped_motion: frames the motion gate let pass unclassified (nothing moved).
      skipped: frames that could not be decoded (the stop event's `unreadable`).
      seconds: wall time of the loop.
      started: time.time() when the loop started.
      first_decision: time.time() when the first frame had been decided (None: no frame).
      events: {event: count}.
      stop_reason: why the loop ended.
    """

    frames: int = 0
    classified: int = 0
    skipped_motion: int = 0
    skipped: int = 0
    seconds: float = 0.0
    started: float = 0.0
    first_decision: float = None
    events: dict = dataclasses.field(default_factory=dict)
    stop_reason: str = ""

    @property
    def fps(self):
        """Frames read per second of loop time."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0


@dataclasses.dataclass(frozen=True)
class DecisionFrame:
    """The frame of the last door decision (shown on the status page).

    Attributes:
      image: the BGR frame (the loop never writes into it).
      frame: the source's frame index.
      event, label, score, reason: the Decision.
    """

    image: np.ndarray
    frame: int
    event: str
    label: str | None = None
    score: float | None = None
    reason: str | None = None


@dataclasses.dataclass(frozen=True)
class Sighting:
    """The last visitor decided about (door_open or denied): who, how sure, when."""

    label: str
    score: float | None
    event: str
    ts: float
    wall: float

    def to_dict(self):
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class MotionSettings:
    """The motion gate's settings: a share of the ROI changing by more than `delta` grey levels."""

    area: float
    delta: int
    heartbeat_seconds: float

    def to_dict(self):
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class LoopSnapshot:
    """The state of a DoorLoop at one moment; every field has a default so fakes can build one.

    Attributes:
      time: the loop's (monotonic) clock when the snapshot was taken.
      running: None before the start event, True while running, False after the stop event.
      stop_reason: why the loop ended (None while it runs).
      door: "open", "closed" or "locked" (closed, and a denied class was seen recently).
      door_open: whether the door is commanded open.
      policy_state: the policy's own state.
      frames, classified, skipped_motion, unreadable: frame counts so far.
      events: {event: count} written so far (a copy).
      events_lost: events that could not be written to the events file.
      fps: frames read per second over the loop's last status interval.
      invoke_ms: duration of the last model invoke.
      last_label, last_score: the top class of the last classified frame (None before the first).
      last_decision: the DecisionFrame of the last door decision with a frame, or None.
      last_animal: the Sighting of the last door_open/denied, or None.
      camera_lost: why the camera is away, or None while frames come.
      seconds_since_frame: since the loop last handled a frame or a camera gap.
      motion: the MotionSettings of the motion gate, or None when every frame is classified.
      snapshots: the snapshot folder, or None.
      roi: the region of interest (x, y, w, h), or None.
      reporters: {name: status dict} of the reporters attached to the loop (MQTT: connected, queued,
        dropped, broker, warning).
    """

    time: float = 0.0
    running: bool | None = None
    stop_reason: str | None = None
    door: str = "closed"
    door_open: bool = False
    policy_state: str = "closed"
    frames: int = 0
    classified: int = 0
    skipped_motion: int = 0
    unreadable: int = 0
    events: dict = dataclasses.field(default_factory=dict)
    events_lost: int = 0
    fps: float = 0.0
    invoke_ms: float = 0.0
    last_label: str | None = None
    last_score: float | None = None
    last_decision: DecisionFrame | None = None
    last_animal: Sighting | None = None
    camera_lost: str | None = None
    seconds_since_frame: float = 0.0
    motion: MotionSettings | None = None
    snapshots: Path | None = None
    roi: tuple | None = None
    reporters: dict = dataclasses.field(default_factory=dict)

    def counters(self):
        """{frames, classified, skipped_motion, unreadable, events_lost, invoke_ms}: what /health and /metrics count."""
        return {"frames": self.frames, "classified": self.classified, "skipped_motion": self.skipped_motion,
                "unreadable": self.unreadable, "events_lost": self.events_lost, "invoke_ms": self.invoke_ms}

    def warnings(self):
        """Things wrong beside the door, which keeps working: lost events, a reporter's trouble (broker away)."""
        out = []
        if self.events_lost:
            out.append(f"{self.events_lost} events not written to the events file (disk full?)")
        out += [r["warning"] for r in self.reporters.values() if r.get("warning")]
        return out


def status_line(snapshot):
    """The periodic log (and systemd STATUS=) line of a snapshot."""
    last = "none" if snapshot.last_label is None else f"{snapshot.last_label} {snapshot.last_score:.2f}"
    line = (f"{snapshot.fps:.1f} fps, door {snapshot.policy_state}, last {last}, "
            f"frames {snapshot.frames}, invoke {snapshot.invoke_ms:.1f} ms")
    return "; ".join([line, *snapshot.warnings()])


def motion_settings(gate):
    """The MotionSettings of a MotionGate, or None for no gate."""
    if gate is None:
        return None
    return MotionSettings(gate.area, gate.delta, gate.heartbeat_seconds)


def call_reporter(name, status):
    """Calls a reporter's status(); one that raises gives a warning instead of breaking the snapshot."""
    # Snapshots are also taken in the loop's thread (the status line): a broken reporter must not stop the door.
    try:
        return dict(status())
    except Exception as e:
        log.debug("reporter %s failed: %s", name, e, exc_info=True)
        return {"warning": f"{name}: status unavailable ({type(e).__name__}: {e})"}
