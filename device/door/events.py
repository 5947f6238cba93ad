"""The events file (JSON lines, flushed per event), JPEG snapshots of the deciding frames, and collected photos."""

import collections
import contextlib
import errno
import json
import logging
import os
import re
import time
from pathlib import Path

import cv2

from tl.device.data.atomic import PRIVATE_DIR, PRIVATE_FILE, check_writable, write_bytes
from tl.device.errors import OutputError

log = logging.getLogger(__name__)

EVENTS = ("start", "door_open", "door_close", "denied", "error", "stop")
# Every line carries these keys, in this order (null where they do not apply).
FIELDS = ("ts", "frame", "event", "label", "score", "reason")


class EventLog:
    """Appends events to a JSONL file, one object per line, flushed per event; also logs them.

    Each line goes out in one unbuffered write(2), so a crash (kill -9 included) never leaves a
    buffered event behind. A line that cannot be written (disk full) is logged as an error and cut
    off again, and the door goes on: the events file is evidence, not the door's safety. The file
    is created 0640 and its folder 0750 (less where the umask says so): it tells when the house is empty.

    Args:
      path: the events file (appended to; its folder is created); None logs only.

    Attributes:
      counts: {event: how many were written}.
      failures: events that could not be written to the file.
    """

    def __init__(self, path=None):
        self.path = Path(path) if path else None
        self.counts = collections.Counter()
        self.failures = 0
        self._listeners = []
        self._fd = None
        if self.path is not None:
            check_writable(self.path.parent, mode=PRIVATE_DIR, option="--events")
            try:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE_FILE)
            except OSError as e:
                raise OutputError(f"events file {self.path}: cannot open it ({e.strerror}); choose another with --events") from e

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def subscribe(self, callback):
        """Calls `callback(record)` with each event (a dict) after it is written, in the writer's thread.

        A callback that raises is logged and skipped; it never stops the door.
        """
        self._listeners.append(callback)

    def unsubscribe(self, callback):
        """Stops calling `callback`; safe when it was never subscribed."""
        with contextlib.suppress(ValueError):
            self._listeners.remove(callback)

    def write(self, event, ts, frame=None, label=None, score=None, reason=None, **extra):
        """Writes one event; returns it as a dict.

        Args:
          event: one of EVENTS.
          ts: the source timestamp in seconds.
          frame: the source frame index, or None.
          label, score: the class concerned and its score, or None.
          reason: why, in words.
          **extra: more keys, after the standard ones (the stop event's counters).
        """
        if event not in EVENTS:
            raise ValueError(f"unknown event {event!r}; events are {', '.join(EVENTS)}")
        record = {
            "ts": round(float(ts), 3),
            "frame": None if frame is None else int(frame),
            "event": event,
            "label": label,
            "score": None if score is None else round(float(score), 4),
            "reason": reason,
            **extra,
        }
        line = json.dumps(record, ensure_ascii=False)
        self._append(line)
        self.counts[event] += 1
        log.log(logging.WARNING if event == "error" else logging.INFO, "event %s", line)
        for listener in list(self._listeners):
            try:
                listener(record)
            except Exception:  # a broken reporter must not take the door down with it
                log.exception("event listener %r failed on %s", listener, event)
        return record

    def _append(self, line):
        if self._fd is None:
            return
        data = (line + "\n").encode("utf-8")
        size = None
        try:
            size = os.fstat(self._fd).st_size
            written = os.write(self._fd, data)
            if written != len(data):
                raise OSError(errno.ENOSPC, f"only {written} of {len(data)} bytes written")
        except OSError as e:
            self.failures += 1
            self._cut(size)
            log.error("events file %s: event not written (%s); %d lost so far, the door keeps working",
                      self.path, e.strerror or e, self.failures)

    def _cut(self, size):
        # A partial line would make the rest of the file unreadable as JSON lines: cut it off.
        if size is None:
            return
        try:
            if os.fstat(self._fd).st_size > size:
                os.ftruncate(self._fd, size)
        except OSError as e:
            log.debug("events file %s: cannot cut a partial line (%s)", self.path, e)

    def close(self):
        """Closes the file; safe twice."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


def read_events(path):
    """Reads an events file back into a list of dicts."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


# Snapshot names: <local time>-<frame>-<event>-<label>.jpg; sorting them sorts by time.
_SNAPSHOT_NAME = re.compile(r"^\d{8}-\d{6}-\d{3}-\d+-[a-z_]+-.*\.jpg$")


def is_snapshot_name(name):
    """Whether a file name is one `Snapshots.save` writes (other files in the folder are left alone)."""
    return bool(_SNAPSHOT_NAME.match(name))


def list_snapshots(folder):
    """The snapshot files in `folder`, oldest first (their names sort by time); [] for a missing folder."""
    try:
        names = sorted(p.name for p in Path(folder).iterdir() if is_snapshot_name(p.name))
    except FileNotFoundError:
        return []
    return [Path(folder) / name for name in names]


class Snapshots:
    """JPEG snapshots of deciding frames in a folder, keeping only the newest `keep`.

    Files are written 0640 in a folder created 0750 (less where the umask says so): they show the porch.

    Args:
      folder: where to write them (created).
      keep: how many snapshots to keep; older ones (by name, which is by time) are deleted.
      quality: JPEG quality 1..100.
    """

    def __init__(self, folder, keep=200, quality=90):
        self.folder = check_writable(folder, mode=PRIVATE_DIR, option="--snapshots")
        self.keep = int(keep)
        self.quality = int(quality)
        self.failures = 0

    def save(self, image, frame, event, label=None, score=None, roi=None):
        """Writes one annotated snapshot atomically; returns its path (None if the write failed).

        A failed write (disk full) is logged and counted, not raised: a snapshot is evidence,
        the door must keep working without it.
        """
        name = f"{_stamp()}-{int(frame)}-{event}-{_safe(label)}.jpg"
        path = self.folder / name
        if not _write_jpeg(path, annotate(image, event, label, score, roi), self.quality, "snapshot"):
            self.failures += 1
            return None
        self._prune()
        return path

    def _prune(self):
        paths = list_snapshots(self.folder)
        for path in paths[: max(0, len(paths) - self.keep)]:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


# Collected photos: <folder>/<label>/<local time>-<frame>-<label>-<score>.jpg; names sort by time.
_COLLECTED_NAME = re.compile(r"^\d{8}-\d{6}-\d{3}-\d+-.+\.jpg$")


class Collector:
    """Plain photos of what the door's model saw, sorted by its guess: training photos of this porch.

    A model trained on other photos is weakest on a porch's own visitors — its foxes, the neighbour's cat, the
    dog at night (benchmarks/generalisation.md) — and those photos teach it most. The loop offers each classified
    frame; at most one every `every` seconds (source time) is saved, unannotated, as the model's region of the
    frame (the ROI, or the whole frame) into folder/<top class>/, or folder/unknown/ when open-set called it
    unknown: a class-folder set to correct (move the misfiled photos, delete the empty porch) and train on.
    Only the newest `keep` photos it wrote are kept, across its class folders (files it did not name are
    never touched). Folders 0750 and files 0640, less where the umask says so: they show the porch.

    Args:
      folder: where to write (created).
      every: least seconds between two saved photos.
      keep: how many photos to keep.
      quality: JPEG quality 1..100.

    Attributes:
      saved: photos written by this collector; failures: photos that could not be written.
    """

    def __init__(self, folder, every=1.0, keep=2000, quality=95):
        self.folder = check_writable(folder, mode=PRIVATE_DIR, option="--collect")
        self.every = float(every)
        self.keep = int(keep)
        self.quality = int(quality)
        self.saved = self.failures = 0
        self._last_ts = None
        found = [p for d in sorted(self.folder.iterdir()) if d.is_dir() for p in d.iterdir()
                 if _COLLECTED_NAME.match(p.name)]
        self._paths = collections.deque(sorted(found, key=lambda p: p.name))

    def due(self, ts):
        """Whether a frame at source time `ts` would be saved (cheap: call it before making the full frame)."""
        return self._last_ts is None or not 0 <= ts - self._last_ts < self.every

    def save(self, image, ts, frame, label, score=None, roi=None):
        """Writes the region of a BGR frame under folder/<label>/ if `due(ts)`; returns its path, or None.

        A failed write (disk full) is logged and counted, not raised: the door must keep working without it.
        """
        if not self.due(ts):
            return None
        self._last_ts = ts
        if roi is not None:
            x, y, w, h = (int(v) for v in roi)
            image = image[y : y + h, x : x + w]
        folder = self.folder / _safe(label)
        path = folder / f"{_stamp()}-{int(frame or 0)}-{_safe(label)}{'' if score is None else f'-{score:.2f}'}.jpg"
        if not _write_jpeg(path, image, self.quality, "collected photo", make_folder=True):
            self.failures += 1
            return None
        self.saved += 1
        self._paths.append(path)
        while len(self._paths) > self.keep:
            with contextlib.suppress(FileNotFoundError):
                self._paths.popleft().unlink()
        return path


def _write_jpeg(path, image, quality, what, make_folder=False):
    """Writes a BGR image as a JPEG file (0640) atomically; False, logged, when it could not be (disk full)."""
    try:
        if make_folder:
            path.parent.mkdir(mode=PRIVATE_DIR, exist_ok=True)
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise OutputError(f"{what} {path}: JPEG encoding failed")
        write_bytes(path, data.tobytes(), mode=PRIVATE_FILE)
    except OSError as e:  # OutputError is an OSError too
        log.error("%s %s not written: %s", what, path, e)
        return False
    return True


def annotate(image, event, label=None, score=None, roi=None):
    """Returns a copy of a BGR frame with the region of interest and the decision drawn on it."""
    out = image.copy()
    colour = (0, 200, 0) if event == "door_open" else (0, 0, 230)
    if roi is not None:
        x, y, w, h = (int(v) for v in roi)
        cv2.rectangle(out, (x, y), (x + w - 1, y + h - 1), colour, 2)
    text = event if label is None else f"{event}: {label}" + ("" if score is None else f" {score:.2f}")
    cv2.putText(out, text, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, colour, 2, cv2.LINE_AA)
    return out


def _stamp():
    now = time.time()
    return time.strftime("%Y%m%d-%H%M%S", time.localtime(now)) + f"-{int(now * 1000) % 1000:03d}"


def _safe(label):
    return re.sub(r"[^A-Za-z0-9_.]+", "_", label or "none").strip("_")[:40] or "none"
