"""The pet-door daemon: frames -> classifier -> policy -> door, with events and snapshots.

The door is commanded closed when it is made, on camera loss, on any exception in the loop and
on stop; `run_door` wires the parts together from a RunConfig. Observers read `DoorLoop.snapshot()`
and `subscribe` to its events; the loop never imports them.
"""

import contextlib
import logging
import threading
import time

from tl.device.door import service, state
from tl.device.door.config import policy_config, require_run, thresholds_in_force
from tl.device.door.events import Collector, EventLog, Snapshots
from tl.device.door.motion import make_gate
from tl.device.door.policy import LOCKED, DoorPolicy
from tl.device.hw.doors import make_door
from tl.device.hw.frames import Gap
from tl.device.hw.sources import open_source, pace, prefetch_depth
from tl.device.model import night
from tl.device.model.classifier import Classifier
from tl.device.recognition.recognizer import make_recognizer

log = logging.getLogger(__name__)


class StopRequest(threading.Event):
    """An Event that also remembers why it was set (e.g. "SIGTERM")."""

    reason = None

    def request(self, reason):
        """Sets the event with a reason."""
        self.reason = reason
        self.set()


class DoorLoop:
    """Runs frames through the classifier and the policy and carries out the decisions.

    Args:
      classifier: a Classifier.
      policy: a DoorPolicy.
      door: a Door (from `make_door`).
      events: an EventLog.
      snapshots: Snapshots, or None.
      roi: (x, y, w, h) region of interest, or None.
      status_seconds: seconds between status lines in the log.
      clock: monotonic clock for the status line and real-time replays.
      gate: a MotionGate that decides which frames are classified, or None: all of them.
      recognizer: a Recognizer (open-set rejection, required identity) judging each classified frame, or None.
      recorder: None, or a callable (loop, frame, gate verdict, scores, recognizer verdict) called per frame
        (scores None: gated) after the policy; `tl-device score` records a replay with it.
      collector: a Collector that gets the classified frames with something in view, or None.

    Other threads (the status page, MQTT) call only `snapshot`, `subscribe`/`unsubscribe` and
    `add_reporter`/`remove_reporter`.
    """

    def __init__(self, classifier, policy, door, events, snapshots=None, roi=None, status_seconds=5.0,
                 clock=time.monotonic, gate=None, recognizer=None, recorder=None, collector=None):
        self.classifier = classifier
        self.policy = policy
        self.door = door
        self.events = events
        self.snapshots = snapshots
        self.roi = roi
        self.status_seconds = status_seconds
        self.clock = clock
        self.stats = state.RunStats()
        self.watchdog = service.Watchdog(clock)
        self.gate = gate
        self.recognizer = recognizer
        self.recorder = recorder
        self.collector = collector
        self.alive_at = clock()
        self.camera_lost = None
        self._source = None
        self._running = None
        self._last = (None, None)
        self._last_decision = None
        self._last_animal = None
        self._fps = 0.0
        self._reporters = {}
        self._status_at = (0.0, 0)

    def subscribe(self, callback):
        """Calls `callback(record)` with each event (a dict, DESIGN.md's JSON line) after it is written.

        The callback runs in the loop's thread: it must be quick, and one that raises is logged and skipped.
        """
        self.events.subscribe(callback)

    def unsubscribe(self, callback):
        """Stops calling `callback`; safe when it was never subscribed."""
        self.events.unsubscribe(callback)

    def add_reporter(self, name, status):
        """Adds `status()` (a dict; its "warning", if any, is shown and logged) to snapshots as reporters[name]."""
        self._reporters[name] = status

    def remove_reporter(self, name):
        """Takes reporter `name` out of the snapshots; safe twice."""
        self._reporters.pop(name, None)

    def snapshot(self):
        """Returns the loop's state now as a frozen LoopSnapshot (cheap; safe from any thread)."""
        s, now = self.stats, self.clock()
        door_open = bool(self.door.is_open)
        policy_state = self.policy.state
        label, score = self._last
        return state.LoopSnapshot(
            time=now, running=self._running, stop_reason=s.stop_reason or None,
            door="open" if door_open else ("locked" if policy_state == LOCKED else "closed"),
            door_open=door_open, policy_state=policy_state, frames=s.frames, classified=s.classified,
            skipped_motion=s.skipped_motion,
            unreadable=self._source.skipped if self._source is not None else s.skipped,
            events=dict(self.events.counts), events_lost=self.events.failures, fps=self._fps,
            invoke_ms=self.classifier.invoke_ms, last_label=label, last_score=score,
            last_decision=self._last_decision, last_animal=self._last_animal, camera_lost=self.camera_lost,
            seconds_since_frame=now - self.alive_at, motion=state.motion_settings(self.gate),
            snapshots=self.snapshots.folder if self.snapshots is not None else None, roi=self.roi,
            reporters={name: state.call_reporter(name, status) for name, status in list(self._reporters.items())},
        )

    def run(self, source, stop, realtime=None, start_reason=""):
        """Runs until the source ends or `stop` is set; returns RunStats.

        Args:
          source: a frame source (see `tl.device.hw.sources`).
          stop: a threading.Event (a StopRequest gives the stop event its reason).
          realtime: pace a replay on its timestamps; None: only live sources are real time.
          start_reason: text of the start event.
        """
        frames = source.frames()
        if realtime and not source.live:
            frames = pace(frames, clock=self.clock, sleep=stop.wait)
        ts = source.clock() if source.live else 0.0
        index = None
        self._source = source
        self.door.close_door()
        self._running = True
        self.events.write("start", ts, reason=start_reason)
        service.notify("READY=1")
        self.stats.started = time.time()
        self._status_at = (self.clock(), 0)
        reason = "end of source"
        try:
            for item in frames:
                if stop.is_set():
                    break
                if isinstance(item, Gap):
                    ts, index = item.ts, None
                    self.on_gap(item)
                else:
                    ts, index = item.ts, item.index
                    self.on_frame(item)
            if stop.is_set():
                reason = getattr(stop, "reason", None) or "stop requested"
        except Exception as e:
            reason = "error"
            self.door.close_door()  # before anything else: a fault never leaves the door open
            self.events.write("error", ts, index, reason=f"{type(e).__name__}: {e}")
            raise
        finally:
            frames.close()
            if source.live:
                ts = source.clock()
            self.stats.skipped = source.skipped
            self._finish(ts, reason)
        return self.stats

    def on_frame(self, frame):
        """Classifies one frame (unless the motion gate passes it over) and carries out the policy's decisions."""
        self.stats.frames += 1
        self.camera_lost = None
        # While the door is open every frame counts: it must close on time, and lock for a raccoon.
        gated = self.gate.check(frame.image, frame.ts, busy=self.door.is_open) if self.gate is not None else None
        if gated is not None and not gated.classify:
            self.stats.skipped_motion += 1
            for decision in self.policy.gated(frame.ts):  # time passes for the policy: an open door closes on time
                self.apply(decision, frame.ts, frame.index, frame.image)
            if self.recorder is not None:
                self.recorder(self, frame, gated, None, None)
            self._tick()
            return
        if frame.pixels is not None:  # the source made the model's input (camera stream, reduced decode)
            scores = self.classifier.classify_pixels(frame.pixels)
        else:
            scores = self.classifier.classify_frame(frame.image, self.roi)
        top = int(scores.argmax())
        self._last = (self.classifier.labels[top], float(scores[top]))
        verdict = self.recognizer.judge(scores, self.classifier, frame.ts, frame.index) if self.recognizer else None
        for decision in self.policy.update(frame.ts, scores, verdict):
            self.apply(decision, frame.ts, frame.index, frame.image)
        self.stats.classified += 1
        if self.collector is not None:
            self._collect(frame, gated, top, scores, verdict)
        if self.recorder is not None:
            self.recorder(self, frame, gated, scores, verdict)
        if self.stats.first_decision is None:
            self.stats.first_decision = time.time()
        self._tick()

    def _collect(self, frame, gated, top, scores, verdict):
        """Offers a classified frame to the collector, unless it shows nothing: an ignored class, or an empty
        porch classified only because the motion gate's heartbeat came round."""
        if top in self.policy.config.ignore or (gated is not None and gated.why in ("heartbeat", "idle")):
            return
        if not self.collector.due(frame.ts):  # before frame.image: a deferred full frame is made only when saved
            return
        label = "unknown" if verdict is not None and verdict.unknown else self.classifier.labels[top]
        self.collector.save(frame.image, frame.ts, frame.index, label, float(scores[top]), self.roi)

    def on_gap(self, gap):
        """The camera is away: close the door, say so once per outage, keep retrying."""
        for decision in self.policy.fault(gap.ts, f"no camera: {gap.reason}"):
            self.apply(decision, gap.ts, None, None)
        self.door.close_door()
        self.camera_lost = gap.reason
        self.alive_at = self.clock()
        if gap.attempt == 1:
            self.events.write("error", gap.ts, reason=f"no camera: {gap.reason}; retrying with backoff")
        log.warning("%s (attempt %d); next try in %.1f s", gap.reason, gap.attempt, gap.retry_in)
        self.watchdog.ping()

    def apply(self, decision, ts, index, image):
        """Drives the door first, then writes the event and, for door_open/denied, a snapshot."""
        if decision.event == "door_open":
            self.door.open_door()
        else:
            self.door.close_door()
        if image is not None:
            self._last_decision = state.DecisionFrame(image, index, *decision)
        if decision.event in state.VISITOR_EVENTS and decision.label:
            score = None if decision.score is None else round(float(decision.score), 4)
            self._last_animal = state.Sighting(decision.label, score, decision.event, round(float(ts), 3), time.time())
        self.events.write(decision.event, ts, index, decision.label, decision.score, decision.reason)
        if self.snapshots is not None and image is not None and decision.event in ("door_open", "denied"):
            self.snapshots.save(image, index, decision.event, decision.label, decision.score, self.roi)

    def _tick(self):
        self.watchdog.ping()
        now = self.alive_at = self.clock()
        since, frames = self._status_at
        if now - since < self.status_seconds:
            return
        self._fps = (self.stats.frames - frames) / (now - since)
        line = state.status_line(self.snapshot())
        log.info("status: %s", line)
        service.notify(f"STATUS={line}")
        self._status_at = (now, self.stats.frames)

    def _finish(self, ts, reason):
        for decision in self.policy.fault(ts, f"stop: {reason}"):
            self.apply(decision, ts, None, None)
        self.door.close_door()
        self.stats.seconds = time.time() - self.stats.started
        self.stats.stop_reason = reason
        self._running = False
        s = self.stats
        self.events.write("stop", ts, reason=f"{reason}; {s.frames} frames", frames=s.frames, classified=s.classified,
                          skipped_motion=s.skipped_motion, unreadable=s.skipped,
                          **(dict(self.recognizer.counts) if self.recognizer else {}),
                          **({"collected": self.collector.saved} if self.collector is not None else {}))
        self.stats.events = dict(self.events.counts)
        service.notify("STOPPING=1")


def run_door(cfg, stop=None, pin_factory=None, observers=None, recorder=None):
    """Runs the door daemon described by a RunConfig until its source ends or `stop` is set.

    Order matters for safety: the door is made (commanded closed) first, so a bad model or
    config refused afterwards still leaves it closed; the camera is opened last.

    Args:
      cfg: a checked RunConfig (see `tl.device.door.config.load_config`).
      stop: a threading.Event/StopRequest; set it (from a signal handler) to stop.
      pin_factory: a gpiozero pin factory for the door (tests); None: gpiozero's choice.
      observers: None, or a callable (cfg, loop, source) -> context manager that watches the running
        loop through `snapshot`/`subscribe` (`tl.device.observe.reporters.open_reporters`: status page,
        MQTT); the loop never imports them.
      recorder: None, or a per-frame callable (see DoorLoop).

    Returns:
      RunStats.

    Raises:
      TLError: refused configuration, model, source or door (the CLI exits 2).
    """
    require_run(cfg)
    stop = stop if stop is not None else StopRequest()
    with contextlib.ExitStack() as stack:
        door = stack.enter_context(make_door(cfg.door, cfg.pin, cfg.active_low, cfg.open_angle,
                                             cfg.closed_angle, pin_factory=pin_factory))
        classifier = Classifier(cfg.model, cfg.labels, threads=cfg.threads, edgetpu=cfg.edgetpu,
                                night=cfg.night_enhance)
        policy = DoorPolicy(policy_config(cfg, classifier.labels, classifier.info.operating_points))
        recognizer = make_recognizer(classifier, cfg.openset, cfg.openset_quantile, cfg.gallery,
                                     cfg.require_identity, cfg.identity_threshold)
        classifier.warm_up()
        source = stack.enter_context(open_source(cfg.source, cfg.fps, cfg.capture, sleep=stop.wait,
                                                 spec=classifier.spec, roi=cfg.roi, prefetch=prefetch_depth(cfg.threads)))
        events = stack.enter_context(EventLog(cfg.events))
        snapshots = Snapshots(cfg.snapshots, cfg.snapshot_keep) if cfg.snapshots else None
        collector = Collector(cfg.collect, cfg.collect_seconds, cfg.collect_keep) if cfg.collect else None
        if source.live and cfg.realtime is False:
            log.warning("--no-realtime has no effect on a live camera")
        loop = DoorLoop(classifier, policy, door, events, snapshots, cfg.roi, cfg.status_seconds,
                        gate=make_gate(cfg, source.live), recognizer=recognizer, recorder=recorder, collector=collector)
        if observers is not None:
            stack.enter_context(observers(cfg, loop, source))
        start_reason = f"{describe(cfg, classifier, policy, door, source)}; {recognizer.describe()}"
        stats = loop.run(source, stop, realtime=cfg.realtime, start_reason=start_reason)
    log.info("stopped (%s): %d frames in %.1f s (%.1f fps), %d classified, %d skipped (no motion), %d unreadable, "
             "events %s", stats.stop_reason, stats.frames, stats.seconds, stats.fps, stats.classified,
             stats.skipped_motion, stats.skipped, stats.events)
    return stats


def describe(cfg, classifier, policy, door, source):
    """The start event's text: what runs, on what, with which policy."""
    pc = policy.config
    return (f"model {classifier.path.name} ({classifier.info.variant}); source {source}; "
            f"allow {pc.names(pc.allow)}; deny {pc.names(pc.deny)}; ignore {pc.names(pc.ignore)}; "
            f"votes {pc.votes}/{pc.window}; {thresholds_in_force(cfg, classifier.labels, classifier.info.operating_points)[2]}; "
            f"open {pc.open_seconds:g} s; "
            f"lockout {pc.lockout_seconds:g} s; {night.describe(classifier.night)}; {door}")
