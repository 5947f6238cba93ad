"""The events file (DESIGN.md's JSONL format, flushed per event) and snapshots (atomic JPEGs, retention)."""

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from tl.device.door.events import EVENTS, FIELDS, EventLog, Snapshots, read_events


def test_events_are_design_format_lines_flushed_per_event(tmp_path):
    path = tmp_path / "logs" / "events.jsonl"
    with EventLog(path) as log:
        log.write("start", 0.0, reason="model m")
        log.write("door_open", 12.3, 123, "dog", np.float32(0.97), "dog 3/5 >= 0.80")
        # Flushed: another reader sees both lines while the log is still open.
        lines = path.read_text().splitlines()
        assert len(lines) == 2
    assert json.loads(lines[1]) == {"ts": 12.3, "frame": 123, "event": "door_open", "label": "dog",
                                    "score": 0.97, "reason": "dog 3/5 >= 0.80"}
    assert list(json.loads(lines[0])) == list(FIELDS)
    assert json.loads(lines[0])["frame"] is None
    log.close()  # safe twice


def test_events_append_across_runs_and_count(tmp_path):
    path = tmp_path / "events.jsonl"
    for _ in range(2):
        with EventLog(path) as log:
            log.write("start", 0.0)
            log.write("stop", 1.0)
    assert [e["event"] for e in read_events(path)] == ["start", "stop", "start", "stop"]
    assert log.counts == {"start": 1, "stop": 1}


def test_unknown_event_is_a_bug():
    with pytest.raises(ValueError, match="door_open"):
        EventLog().write("door_ajar", 0.0)
    assert EVENTS == ("start", "door_open", "door_close", "denied", "error", "stop")


def test_snapshots_are_jpegs_with_retention(tmp_path):
    snaps = Snapshots(tmp_path / "snaps", keep=3)
    image = np.zeros((48, 64, 3), np.uint8)
    (tmp_path / "snaps" / "mine.txt").write_text("not ours: never deleted")
    paths = [snaps.save(image, i, "door_open" if i % 2 else "denied", "dog", 0.9, roi=(4, 4, 20, 20))
             for i in range(5)]
    left = sorted(p.name for p in (tmp_path / "snaps").iterdir())
    assert len(left) == 4 and "mine.txt" in left
    assert [p.name for p in paths[-3:]] == sorted(n for n in left if n.endswith(".jpg"))
    decoded = cv2.imread(str(paths[-1]))
    assert decoded.shape == (48, 64, 3)
    assert not [n for n in os.listdir(tmp_path / "snaps") if ".tmp" in n]  # written atomically


def test_snapshot_write_failure_is_logged_not_raised(tmp_path, monkeypatch, caplog):
    snaps = Snapshots(tmp_path / "snaps")

    def disk_full(path, data, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("tl.device.door.events.write_bytes", disk_full)
    assert snaps.save(np.zeros((8, 8, 3), np.uint8), 1, "denied", "raccoon", 0.9) is None
    assert snaps.failures == 1
    assert "No space left" in caplog.text


def test_sd_notify_and_watchdog_talk_to_the_notify_socket(tmp_path, monkeypatch):
    import socket

    from tl.device.door import service

    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert service.notify("READY=1") is False  # not under systemd: a no-op
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        server.settimeout(2)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        monkeypatch.setenv("WATCHDOG_USEC", "2000000")
        assert service.notify("READY=1")
        assert server.recv(64) == b"READY=1"
        now = [100.0]
        dog = service.Watchdog(clock=lambda: now[0])
        assert dog.interval == 1.0
        dog.ping()
        dog.ping()  # too soon: not sent
        now[0] += 1.0
        dog.ping()
        assert [server.recv(64), server.recv(64)] == [b"WATCHDOG=1", b"WATCHDOG=1"]
        server.setblocking(False)
        with pytest.raises(BlockingIOError):
            server.recv(64)


def test_events_and_snapshots_are_for_owner_and_group_only(tmp_path):
    old = os.umask(0o022)  # a login shell's: world-readable unless the code says otherwise
    try:
        with EventLog(tmp_path / "logs" / "events.jsonl") as log:
            log.write("start", 0.0)
        path = Snapshots(tmp_path / "snaps").save(np.zeros((8, 8, 3), np.uint8), 1, "denied", "raccoon", 0.9)
    finally:
        os.umask(old)
    modes = {p.relative_to(tmp_path).as_posix(): p.stat().st_mode & 0o777
             for p in (tmp_path / "logs", tmp_path / "logs" / "events.jsonl", tmp_path / "snaps", path)}
    assert modes == {"logs": 0o750, "logs/events.jsonl": 0o640, "snaps": 0o750, f"snaps/{path.name}": 0o640}
    # Under systemd the shipped unit's umask keeps everything else the daemon writes private too.
    unit = Path(__file__).resolve().parents[1] / "device" / "deploy" / "tl-device.service"
    assert "\nUMask=0027\n" in unit.read_text()
