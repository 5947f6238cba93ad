"""Observers see the door only through its snapshot and events; the status server's HTTP manners.

A fake loop with nothing but `snapshot()` and `subscribe` serves the page, /health, /status.json,
/snapshot.jpg and /metrics; HEAD answers every GET route; idle and surplus connections are closed.
"""

import dataclasses
import http.client
import json
import socket
import time

import numpy as np
import pytest

pytest.importorskip("gpiozero")
from gpiozero.pins.mock import MockFactory

from tests.support.loops import FakeLoop
from tests.support.scenes import make_scene, timeline
from tl.device.door.events import EventLog
from tl.device.door.loop import DoorLoop, StopRequest
from tl.device.door.policy import DoorPolicy, make_policy_config
from tl.device.door.state import DecisionFrame, MotionSettings, Sighting, status_line
from tl.device.hw.doors import make_door
from tl.device.hw.frames import Frame, Source
from tl.device.model.classifier import Classifier
from tl.device.observe.status import StatusServer
from tl.device.observe.telemetry import LoopView

ROUTES = ("/", "/health", "/status.json", "/metrics", "/snapshot.jpg", "/nothing-here")


def locked_door():
    """A fake loop whose door was just locked against a raccoon."""
    frame = np.zeros((48, 64, 3), np.uint8)
    return FakeLoop(time=50.0, running=True, door="locked", policy_state="locked", frames=40, classified=30,
                    skipped_motion=10, unreadable=1, events={"start": 1, "denied": 1}, invoke_ms=2.5,
                    last_label="raccoon", last_score=0.93, seconds_since_frame=0.2,
                    last_animal=Sighting("raccoon", 0.93, "denied", 3.2, time.time()),
                    last_decision=DecisionFrame(frame, 32, "denied", "raccoon", 0.93, "raccoon 0.93"),
                    motion=MotionSettings(0.02, 25, 5.0))


@pytest.fixture
def served():
    loop = locked_door()
    view = LoopView(loop, stall_seconds=5.0)
    server = StatusServer(view, "127.0.0.1", 0, idle_seconds=0.5)
    try:
        yield loop, view, server
    finally:
        server.close()
        view.close()


def request(server, path, method="GET"):
    """(status, headers, body) of one request."""
    conn = http.client.HTTPConnection(*server.address, timeout=10)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def test_a_loop_that_only_publishes_snapshots_serves_every_page(served):
    from prometheus_client.parser import text_string_to_metric_families

    loop, view, server = served
    loop.emit({"ts": 3.2, "frame": 32, "event": "denied", "label": "raccoon", "score": 0.93, "reason": "r"})
    code, _, body = request(server, "/health")
    health = json.loads(body)
    assert code == 200 and health["door"] == "locked" and health["warnings"] == []
    assert (health["frames"], health["skipped_motion"], health["unreadable"]) == (40, 10, 1)
    page = request(server, "/")[2].decode()
    assert "Door locked" in page and "<b>raccoon</b> 0.93" in page and "on: 2.0% of the ROI" in page
    status = json.loads(request(server, "/status.json")[2])
    assert status["events"][0]["event"] == "denied" and status["last_animal"]["label"] == "raccoon"
    code, headers, _ = request(server, "/snapshot.jpg")
    assert code == 200 and headers["Content-Type"] == "image/jpeg"
    text = request(server, "/metrics")[2].decode()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples[("tl_door_state", (("state", "locked"),))] == 1 and samples[("tl_frames_total", ())] == 40
    assert samples[("tl_events_total", (("event", "denied"),))] == 1
    assert samples[("tl_seconds_since_frame", ())] == pytest.approx(0.2)
    loop.set(running=False, stop_reason="SIGTERM")
    code, _, body = request(server, "/health")
    assert code == 503 and json.loads(body)["problems"] == ["stopped (SIGTERM)"]
    view.close()
    assert loop.listeners() == 0


def test_head_answers_every_get_route_without_a_body(served):
    _, _, server = served
    for path in ROUTES:
        got, head = request(server, path), request(server, path, "HEAD")
        assert head[0] == got[0] != 501, path
        assert head[1]["Content-Type"] == got[1]["Content-Type"] and head[2] == b"", path
    assert int(request(server, "/health", "HEAD")[1]["Content-Length"]) == len(request(server, "/health")[2])


def test_an_idle_connection_is_closed_after_the_timeout(served):
    _, _, server = served
    for sent in (b"", b"GET /health HTTP/1.1\r\n"):  # nothing at all; a request cut off before its end
        with socket.create_connection(server.address, timeout=5) as sock:
            sock.sendall(sent)
            start = time.monotonic()
            assert sock.recv(100) == b""  # the server closed it
            assert 0.4 <= time.monotonic() - start < 3.0
    assert request(server, "/health")[0] == 200


def test_connections_beyond_the_limit_are_refused_until_one_ends():
    view = LoopView(locked_door())
    server = StatusServer(view, "127.0.0.1", 0, idle_seconds=10, max_connections=2)
    try:
        idle = [socket.create_connection(server.address, timeout=5) for _ in range(2)]
        with socket.create_connection(server.address, timeout=5) as third:
            assert third.recv(200).startswith(b"HTTP/1.0 503 Service Unavailable")
        for sock in idle:
            sock.close()
        deadline = time.monotonic() + 5
        while True:  # the slots come back as the handlers see the clients go
            try:
                if request(server, "/health")[0] == 200:
                    break
            except (http.client.HTTPException, OSError):
                pass
            assert time.monotonic() < deadline, "the server did not recover its connection slots"
            time.sleep(0.05)
    finally:
        server.close()


class _Replay(Source):
    def __init__(self, images):
        self.images = images

    def frames(self):
        for i, image in enumerate(self.images):
            yield Frame(i / 10, i, image)


def test_the_loop_publishes_a_frozen_snapshot_and_its_events(tiny_models, tmp_path):
    rng = np.random.default_rng(4)
    classifier = Classifier(tiny_models["tiny_int8"])
    policy = DoorPolicy(make_policy_config(classifier.labels, ["dog"], threshold=0.7, open_seconds=1.0))
    loop = DoorLoop(classifier, policy, make_door("mock", pin_factory=MockFactory()),
                    EventLog(tmp_path / "events.jsonl"))
    assert loop.snapshot().running is None and loop.snapshot().door == "closed"
    seen = []
    loop.subscribe(seen.append)
    loop.add_reporter("broker", lambda: {"warning": "broker away"})
    loop.add_reporter("broken", lambda: 1 / 0)
    images = [make_scene(k, rng) for k in timeline(("dog", 5), ("background", 20))]
    loop.run(_Replay(images), StopRequest())
    snap = loop.snapshot()
    assert [e["event"] for e in seen] == ["start", "door_open", "door_close", "stop"]
    assert (snap.running, snap.stop_reason, snap.door, snap.door_open) == (False, "end of source", "closed", False)
    assert (snap.frames, snap.classified, snap.events["door_open"]) == (25, 25, 1)
    assert snap.last_animal.label == "dog" and snap.last_animal.event == "door_open"
    assert snap.last_decision.event == "door_close" and snap.last_decision.image.shape == images[0].shape
    assert snap.warnings()[0] == "broker away" and "ZeroDivisionError" in snap.warnings()[1]
    assert "frames 25" in status_line(snap) and "broker away" in status_line(snap)
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.frames = 0
    loop.unsubscribe(seen.append)
    loop.remove_reporter("broker")
    loop.events.close()
    assert len(loop.snapshot().reporters) == 1
