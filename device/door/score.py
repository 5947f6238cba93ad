"""What the door did on a recording, visit by visit: pure functions over door events and a truth file.

A truth file lists labelled visits (CSV, header `start_s,end_s,label`, seconds of source time). A
visit of an allowed class is `in_time` when the door was open within `in_time` seconds of its start,
`late` when it opened later during the visit, `missed` when it never did; a visit of any other class is
`kept_out`, or `let_in` when the door opened during it. A door_open outside every visit is a false
open (the empty porch). `replay` runs the pure policy over recorded frames, so `sweep` tries many
settings on one classification of the recording.
"""

import collections
import csv
import dataclasses
import itertools
import math
from pathlib import Path

from tl.device.door.motion import decide
from tl.device.door.policy import OPEN, DoorPolicy
from tl.device.errors import ConfigError, DataError

Visit = collections.namedtuple("Visit", ["start_s", "end_s", "label"])
Visit.__doc__ = "One labelled visit of the truth file: from start_s to end_s (source seconds), who."

FrameRecord = collections.namedtuple("FrameRecord", ["ts", "scores", "verdict", "moving"])
FrameRecord.__doc__ = ("One frame as the loop saw it: timestamp, scores (None: not classified), the recognizer's "
                       "verdict, and whether the motion gate saw motion (None: no gate).")

OUTCOMES = ("in_time", "late", "missed", "kept_out", "let_in")


def read_truth(path):
    """Reads a truth CSV (`start_s,end_s,label`) into a list of Visits sorted by start.

    Raises:
      DataError: a missing file, a wrong header, or a row that is not two times and a label.
    """
    path = Path(path)
    try:
        with path.open(newline="") as f:
            rows = list(csv.reader(f))
    except OSError as e:
        raise DataError(f"truth file {path}: cannot read it ({e.strerror})") from e
    header = [c.strip() for c in rows[0]] if rows else []
    if header != ["start_s", "end_s", "label"]:
        raise DataError(f"truth file {path}: the first line must be the header start_s,end_s,label (got {rows[:1]})")
    visits = []
    for line, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        try:
            start, end, label = float(row[0]), float(row[1]), row[2].strip()
        except (ValueError, IndexError):
            raise DataError(f"truth file {path}, line {line}: expected START_S,END_S,LABEL, got {row}") from None
        if not label or not end > start >= 0:
            raise DataError(f"truth file {path}, line {line}: need 0 <= start_s < end_s and a label, got {row}")
        visits.append(Visit(start, end, label))
    return sorted(visits)


def open_intervals(events, end_ts=math.inf):
    """[(opened, closed)] from door_open/door_close events (dicts with `ts` and `event`), in order."""
    out, opened = [], None
    for e in events:
        if e["event"] == "door_open" and opened is None:
            opened = e["ts"]
        elif e["event"] == "door_close" and opened is not None:
            out.append((opened, e["ts"]))
            opened = None
    if opened is not None:
        out.append((opened, end_ts))
    return out


def judge_visit(visit, allowed, intervals, denials, in_time=0.5):
    """One visit's row: outcome and, for allowed visits, how long the door took (`delay_s`)."""
    row = {"start_s": visit.start_s, "end_s": visit.end_s, "label": visit.label,
           "denied": sum(visit.start_s <= t <= visit.end_s for t in denials)}
    if visit.label in allowed:
        # When the door was first open during the visit: already open at its start counts as at once.
        starts = [max(a, visit.start_s) for a, b in intervals if a <= visit.end_s and b > visit.start_s]
        delay = round(min(starts) - visit.start_s, 3) if starts else None
        row["delay_s"] = delay
        row["outcome"] = "missed" if delay is None else "in_time" if delay <= in_time + 1e-9 else "late"
        if row["outcome"] == "late":
            row["late_s"] = round(delay - in_time, 3)
    else:
        opened = [a for a, _ in intervals if visit.start_s <= a <= visit.end_s]
        row["outcome"] = "let_in" if opened else "kept_out"
        if opened:
            row["opened_s"] = opened[0]
    return row


def score_events(events, visits, allow, in_time=0.5, frames=None, classified=None):
    """Scores a run's events against the truth.

    Args:
      events: the run's events (dicts with ts and event), in order.
      visits: Visits from `read_truth`.
      allow: the labels the door should open for.
      in_time: seconds after a visit's start by which the door must be open.
      frames, classified: frames read and classified (for the classified share), or None.

    Returns:
      {"visits": [rows], "false_opens": N, "false_open_s": [ts], "lockouts": N, "summary": {...}, ...}.
    """
    intervals = open_intervals(events)
    denials = [e["ts"] for e in events if e["event"] == "denied"]
    rows = [judge_visit(v, set(allow), intervals, denials, in_time) for v in visits]
    false = [a for a, _ in intervals if not any(v.start_s <= a <= v.end_s for v in visits)]
    counts = collections.Counter(r["outcome"] for r in rows)
    summary = {k: counts.get(k, 0) for k in OUTCOMES}
    summary["allowed_visits"] = sum(v.label in allow for v in visits)
    summary["other_visits"] = len(visits) - summary["allowed_visits"]
    result = {"visits": rows, "false_opens": len(false), "false_open_s": false, "lockouts": len(denials),
              "in_time_s": in_time, "summary": summary}
    if frames:
        result.update(frames=frames, classified=classified, classified_share=round(classified / frames, 4))
    return result


def replay(records, policy_config, heartbeat_seconds=None, watch_open=True):
    """Runs the pure policy over recorded frames; returns (events as dicts, frames classified).

    With a gate (`moving` not None), a frame is classified as the loop would: when it moves, on a
    heartbeat, or (`watch_open`) while the door is open; other frames go to the policy as gated frames.
    """
    policy = DoorPolicy(policy_config)
    events, classified, last = [], 0, None
    for r in records:
        if r.moving is not None:
            why = decide(r.moving, watch_open and policy.state == OPEN, r.ts, last, heartbeat_seconds)
            if why == "idle":
                events += [_event(d, r.ts) for d in policy.gated(r.ts)]
                continue
            last = r.ts
        if r.scores is None:
            raise DataError(f"frame at {r.ts:.2f} s was not classified in the recording pass; record with all scores")
        classified += 1
        events += [_event(d, r.ts) for d in policy.update(r.ts, r.scores, r.verdict)]
    if records:
        events += [_event(d, records[-1].ts) for d in policy.fault(records[-1].ts, "end of recording")]
    return events, classified


def _event(decision, ts):
    return {"ts": round(float(ts), 3), "event": decision.event, "label": decision.label, "score": decision.score,
            "reason": decision.reason}


def parse_sweep(specs):
    """Turns --sweep specs into a list of settings ({key: value}), every combination of the keys.

    `threshold=0.3:0.95:0.05` (start:stop:step, stop included) or `threshold=0.5,0.8` (the allowed classes');
    `deny=0.8,0.99` (the threshold of the classes that lock the door, same forms); `votes=2/4,3/5,4/6`;
    `lockout=2,30` (seconds the door stays locked after a denied class).

    Raises:
      ConfigError: an unknown key or a value that does not parse.
    """
    axes = {}
    for spec in specs:
        key, sep, values = spec.partition("=")
        key = key.strip()
        if not sep or key not in ("threshold", "deny", "votes", "lockout"):
            raise ConfigError(f"--sweep {spec!r}: expected threshold=START:STOP:STEP (or a,b,c), deny=a,b, "
                              "votes=K/N,K/N or lockout=SECONDS,SECONDS")
        try:
            axes[key] = {"threshold": _thresholds, "deny": _thresholds, "votes": _votes, "lockout": _seconds}[key](values)
        except (ValueError, ZeroDivisionError):
            raise ConfigError(f"--sweep {spec!r}: cannot read the values; e.g. threshold=0.3:0.95:0.05, "
                              "votes=2/4,3/5,4/6") from None
    return [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())] if axes else []


def _thresholds(text):
    if ":" in text:
        start, stop, step = (float(v) for v in text.split(":"))
        if step <= 0:
            raise ValueError(text)
        count = int(math.floor((stop - start) / step + 1e-9)) + 1
        values = [round(start + i * step, 6) for i in range(count)]
    else:
        values = [float(v) for v in text.split(",")]
    if not values or not all(0.0 <= v <= 1.0 for v in values):
        raise ValueError(text)
    return values


def _seconds(text):
    values = [float(v) for v in text.split(",")]
    if not all(v >= 0 for v in values):
        raise ValueError(text)
    return values


def _votes(text):
    out = []
    for item in text.split(","):
        k, n = (int(v) for v in item.split("/"))
        if not 1 <= k <= n:
            raise ValueError(item)
        out.append((k, n))
    return out


def configure(policy_config, setting):
    """The PolicyConfig with a sweep setting applied: `threshold` for the allowed classes, `deny` for the classes
    that lock the door (each keeps the threshold in force otherwise), `votes` as (K, N), `lockout`."""
    changes = {}
    thresholds = list(policy_config.thresholds)
    for key, classes in (("threshold", policy_config.allow), ("deny", policy_config.deny)):
        for i in classes if key in setting else ():
            thresholds[i] = float(setting[key])
    changes["thresholds"] = tuple(thresholds)
    if "votes" in setting:
        changes["votes"], changes["window"] = setting["votes"]
    if "lockout" in setting:
        changes["lockout_seconds"] = float(setting["lockout"])
    if hasattr(policy_config, "model_copy"):  # a pydantic model
        return policy_config.model_copy(update=changes)
    return dataclasses.replace(policy_config, **changes)


def sweep(records, policy_config, settings, visits, allow, in_time=0.5, heartbeat_seconds=None, watch_open=True):
    """Replays every setting (and the config in force, marked `default`, if no setting is it); one row each.

    Rows: threshold (of the first allowed class), deny (of the first class that locks the door, or None), votes "K/N", lockout_s, default, allowed_in_time, allowed_let_in (in time or late), others_let_in,
    false_opens, lockouts, classified_share.
    """
    rows = []
    for setting in settings:
        rows.append(_sweep_row(records, configure(policy_config, setting), policy_config, visits, allow, in_time,
                               heartbeat_seconds, watch_open))
    if not any(r["default"] for r in rows):
        rows.insert(0, _sweep_row(records, policy_config, policy_config, visits, allow, in_time, heartbeat_seconds,
                                     watch_open))
    return rows


def _sweep_row(records, cfg, default, visits, allow, in_time, heartbeat_seconds, watch_open):
    events, classified = replay(records, cfg, heartbeat_seconds, watch_open)
    s = score_events(events, visits, allow, in_time, len(records), classified)
    return {"threshold": cfg.thresholds[cfg.allow[0]], "deny": cfg.thresholds[cfg.deny[0]] if cfg.deny else None,
            "votes": f"{cfg.votes}/{cfg.window}",
            "lockout_s": cfg.lockout_seconds, "default": cfg == default,
            "allowed_in_time": s["summary"]["in_time"], "allowed_let_in": s["summary"]["in_time"] + s["summary"]["late"],
            "allowed_visits": s["summary"]["allowed_visits"], "others_let_in": s["summary"]["let_in"],
            "other_visits": s["summary"]["other_visits"], "false_opens": s["false_opens"],
            "lockouts": s["lockouts"], "classified_share": s.get("classified_share")}


def visit_lines(result):
    """The per-visit table and a summary, as lines of text."""
    lines = [f"{'#':>3}  {'start_s':>8}  {'end_s':>8}  {'label':<10}  {'outcome':<8}  {'door after':>10}  denied"]
    for i, r in enumerate(result["visits"], start=1):
        after = f"{r['delay_s']:.2f} s" if r.get("delay_s") is not None else "-"
        lines.append(f"{i:>3}  {r['start_s']:>8.2f}  {r['end_s']:>8.2f}  {r['label']:<10}  {r['outcome']:<8}  "
                     f"{after:>10}  {r['denied']}")
    return lines + [""] + summary_lines(result)


def summary_lines(result):
    """What a user needs to know of a scored run, in three lines."""
    s = result["summary"]
    lines = [f"allowed visits: {s['in_time']} of {s['allowed_visits']} in time (door open within "
             f"{result['in_time_s']:g} s), {s['late']} late, {s['missed']} missed",
             f"other visits: {s['kept_out']} of {s['other_visits']} kept out, {s['let_in']} let in; "
             f"false opens on the empty porch: {result['false_opens']}; lockouts: {result['lockouts']}"]
    if "frames" in result:
        lines.append(f"classified {result['classified']} of {result['frames']} frames "
                     f"({result['classified_share']:.0%})")
    return lines


def sweep_lines(rows):
    """The sweep's trade-off table, the settings in force marked with *."""
    lines = [f"  {'threshold':>9}  {'deny':>4}  {'votes':>5}  {'lockout':>7}  {'in time':>7}  {'let in':>6}  {'others in':>9}  "
             f"{'false opens':>11}  {'lockouts':>8}  classified"]
    for r in rows:
        share = f"{r['classified_share']:.0%}" if r["classified_share"] is not None else "-"
        deny = f"{r['deny']:.2f}" if r.get("deny") is not None else "-"
        lines.append(f"{'*' if r['default'] else ' '} {r['threshold']:>9.2f}  {deny:>4}  {r['votes']:>5}  {r['lockout_s']:>6g}s  "
                     f"{r['allowed_in_time']:>3}/{r['allowed_visits']:<3}  {r['allowed_let_in']:>6}  "
                     f"{r['others_let_in']:>4}/{r['other_visits']:<4}  {r['false_opens']:>11}  {r['lockouts']:>8}  {share}")
    return lines + ["* the settings in force; in time / let in: allowed visits; others in: other visits let in"]
