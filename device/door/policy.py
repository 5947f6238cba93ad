"""The door policy: a pure state machine over (timestamp, scores); no clocks, no sleeps, no I/O.

Open when an allowed class wins at least K of the last N frames at or above its threshold and no
denied class reached its threshold in those frames; stay open `open_seconds` after the last
allowed frame; after a denied class, close at once and stay locked `lockout_seconds`. Ignored
classes (an empty-scene `background` class) neither open nor lock the door, and neither do frames
a Verdict calls unknown (see `tl.device.recognition.recognizer`); a frame whose Verdict is not identified
cannot count as allowed.
"""

import collections
import dataclasses
import logging

import numpy as np

from tl.device.errors import ConfigError

log = logging.getLogger(__name__)

BACKGROUND = "background"
NAMES_SHOWN = 10  # class names a message lists before it counts the rest
CLOSED, OPEN, LOCKED = "closed", "open", "locked"

Decision = collections.namedtuple("Decision", ["event", "label", "score", "reason"])
Decision.__doc__ = "What the policy decided on a frame: an event name (door_open, door_close, denied) and why."

_Vote = collections.namedtuple("_Vote", ["ts", "allowed", "allowed_score", "denied", "denied_score"])


@dataclasses.dataclass(frozen=True)
class PolicyConfig:
    """A validated policy, with classes as output indices.

    Attributes:
      labels: the model's labels, in output order.
      allow, deny, ignore: tuples of label indices.
      thresholds: per-label threshold, indexed like `labels`.
      votes, window: open on `votes` allowed frames among the last `window` frames (K of N).
      open_seconds: how long the door stays open after the last allowed frame.
      lockout_seconds: how long the door stays locked after the last denied frame.
    """

    labels: tuple
    allow: tuple
    deny: tuple
    ignore: tuple
    thresholds: tuple
    votes: int = 3
    window: int = 5
    open_seconds: float = 10.0
    lockout_seconds: float = 30.0

    def names(self, indices, most=NAMES_SHOWN):
        """Returns the labels of `indices`, comma-separated (for messages); long lists are cut short.

        A 1001-class ImageNet model denies 1000 classes: its start event names the first `most`
        and counts the rest, instead of being a 60 KB line.
        """
        names = [self.labels[i] for i in indices]
        if len(names) > most:
            return ", ".join(names[:most]) + f", … ({len(names)} classes)"
        return ", ".join(names) or "none"


def make_policy_config(labels, allow, deny=None, ignore=None, threshold=0.8, thresholds=None,
                       votes=(3, 5), open_seconds=10.0, lockout_seconds=30.0):
    """Resolves class names to the model's output indices and builds a PolicyConfig.

    The numbers come already checked (`tl.device.door.config` validates every range once); the
    names are looked up here because only here are the labels known.

    Args:
      labels: the model's labels.
      allow: class names that open the door (at least one).
      deny: class names that lock it; None means every class neither allowed nor ignored.
      ignore: class names that do neither; None means `background` when the model has it.
      threshold: the score a class must reach to count, 0..1.
      thresholds: {class name: threshold} overrides.
      votes: (K, N): K allowed frames among the last N.
      open_seconds, lockout_seconds: see PolicyConfig.

    Raises:
      ConfigError: an unknown class (the message lists the model's), a class in two roles.
    """
    labels = tuple(labels)
    allow_i = _indices(labels, allow, "allow")
    if not allow_i:
        raise ConfigError(f"no class opens the door; say which with --allow (the model's classes: {', '.join(labels)})")
    if ignore is None:
        ignore = [BACKGROUND] if BACKGROUND in labels and BACKGROUND not in allow else []
    ignore_i = _indices(labels, ignore, "ignore")
    if deny is None:
        deny_i = tuple(i for i in range(len(labels)) if i not in allow_i and i not in ignore_i)
    else:
        deny_i = _indices(labels, deny, "deny")
    _check_disjoint(labels, allow=allow_i, deny=deny_i, ignore=ignore_i)
    per_class = [float(threshold)] * len(labels)
    for name, value in (thresholds or {}).items():
        per_class[_indices(labels, [name], "thresholds")[0]] = float(value)
    k, n = (int(v) for v in votes)
    return PolicyConfig(labels, allow_i, deny_i, ignore_i, tuple(per_class), k, n,
                        float(open_seconds), float(lockout_seconds))


def _indices(labels, names, option):
    out = []
    for name in names or ():
        if name not in labels:
            raise ConfigError(f"--{option} {name!r}: the model has no such class; its classes are: {', '.join(labels)}")
        out.append(labels.index(name))
    return tuple(dict.fromkeys(out))


def _check_disjoint(labels, **roles):
    seen = {}
    for role, indices in roles.items():
        for i in indices:
            if i in seen:
                raise ConfigError(f"class {labels[i]!r} is both in --{seen[i]} and in --{role}; give it one role")
            seen[i] = role


class DoorPolicy:
    """The door's state machine; feed it every frame's scores with `update`.

    Attributes:
      config: the PolicyConfig.
      state: "closed", "open" or "locked" (closed, and denied classes were seen recently).
    """

    # Gated frames: False holds the vote window (measured best, benchmarks/door_scenes.md); True repeats the last vote.
    repeat_gated = False

    def __init__(self, config):
        self.config = config
        self.state = CLOSED
        self._votes = collections.deque(maxlen=config.window)
        self._thresholds = np.asarray(config.thresholds, np.float32)
        self._last_ts = float("-inf")
        self._offset = 0.0
        self._last_allowed = 0.0
        self._locked_until = 0.0

    def update(self, ts, scores, verdict=None):
        """Takes one frame's scores at source time `ts` (seconds); returns a list of Decisions.

        `verdict` (anything with `unknown` and `identified`, or None) vetoes the frame's vote: an
        unknown frame counts neither as allowed nor as denied, an unidentified one not as allowed.
        """
        ts = self._monotonic(float(ts))
        vote = self._vote(ts, np.asarray(scores, np.float32))
        if verdict is not None and (verdict.unknown or not verdict.identified):
            vote = vote._replace(allowed=None, denied=None if verdict.unknown else vote.denied)
        return self._decide(ts, vote)

    def _decide(self, ts, vote):
        self._votes.append(vote)
        if vote.denied is not None:
            return self._deny(ts, vote)
        if self.state == LOCKED:
            if ts < self._locked_until:
                return []
            log.info("lockout over at %.2f s", ts)
            self.state = CLOSED
        if self.state == OPEN:
            return self._keep_open(ts, vote)
        return self._maybe_open(ts)

    def gated(self, ts):
        """Takes a frame the motion gate passed over (nothing there, or nothing new); returns a list of Decisions.

        It brings no evidence: the vote window keeps what it holds (a visitor standing still is still
        decided on the frames that were classified), an open door closes `open_seconds` after the last
        allowed frame, and a lockout ends on time. With `repeat_gated`, the frame instead counts as a
        copy of the last classified frame's vote.
        """
        ts = self._monotonic(float(ts))
        if self.repeat_gated and self._votes:
            return self._decide(ts, self._votes[-1]._replace(ts=ts))
        if self.state == LOCKED and ts >= self._locked_until:
            log.info("lockout over at %.2f s", ts)
            self.state = CLOSED
        if self.state == OPEN:
            return self._keep_open(ts, _Vote(ts, None, None, None, None))
        return []

    def fault(self, ts, reason):
        """Closes the door for a reason outside the scores (stop, camera loss, error).

        The vote window is cleared, a lockout is kept. Returns a list of Decisions.
        """
        self._votes.clear()
        if self.state != OPEN:
            return []
        self.state = CLOSED
        return [Decision("door_close", None, None, reason)]

    def _monotonic(self, ts):
        # A clock can step back (NTP on a Pi without a real-time clock). The step is absorbed into
        # an offset, so policy time goes on at the clock's rate instead of standing still.
        ts += self._offset
        if ts < self._last_ts:
            self._offset += self._last_ts - ts
            ts = self._last_ts
        self._last_ts = ts
        return ts

    def locked_for(self, ts):
        """Seconds of lockout left at source time `ts` (0 when not locked)."""
        return max(0.0, self._locked_until - ts - self._offset) if self.state == LOCKED else 0.0

    def _vote(self, ts, scores):
        cfg = self.config
        top = int(np.argmax(scores))
        allowed = top if top in cfg.allow and scores[top] >= self._thresholds[top] else None
        denied = None
        for i in cfg.deny:
            if scores[i] >= self._thresholds[i] and (denied is None or scores[i] > scores[denied]):
                denied = i
        return _Vote(ts, allowed, float(scores[top]), denied, float(scores[denied]) if denied is not None else None)

    def _deny(self, ts, vote):
        cfg = self.config
        label, score = cfg.labels[vote.denied], vote.denied_score
        out = []
        if self.state == OPEN:
            out.append(Decision("door_close", label, score, f"{label} {score:.2f} seen while open"))
        if self.state != LOCKED:
            out.append(Decision("denied", label, score, f"{label} {score:.2f} >= {cfg.thresholds[vote.denied]:.2f}; "
                                                        f"locked {cfg.lockout_seconds:g} s"))
        self.state = LOCKED
        self._locked_until = ts + cfg.lockout_seconds
        return out

    def _keep_open(self, ts, vote):
        cfg = self.config
        if vote.allowed is not None:
            self._last_allowed = ts
            return []
        if ts - self._last_allowed < cfg.open_seconds:
            return []
        self.state = CLOSED
        # Its evidence is spent: with gated frames the window may still hold the allowed votes that
        # opened it, and must not reopen the door on them when the next frame is classified.
        self._votes.clear()
        return [Decision("door_close", None, None, f"no {cfg.names(cfg.allow)} for {cfg.open_seconds:g} s")]

    def _maybe_open(self, ts):
        cfg = self.config
        hits = [v for v in self._votes if v.allowed is not None]
        if len(hits) < cfg.votes or any(v.denied is not None for v in self._votes):
            return []
        last = hits[-1]
        label = cfg.labels[last.allowed]
        self.state = OPEN
        self._last_allowed = last.ts
        reason = f"{label} {len(hits)}/{cfg.window} >= {cfg.thresholds[last.allowed]:.2f}"
        return [Decision("door_open", label, last.allowed_score, reason)]
