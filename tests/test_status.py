"""The status page, /health and /metrics of a running door, over real HTTP (and in headless Chromium)."""

import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest

pytest.importorskip("gpiozero")
from gpiozero.pins.mock import MockFactory

from tests.support.scenes import make_scene, timeline, write_frames
from tl.device.door import config
from tl.device.door.events import EventLog, read_events
from tl.device.door.loop import DoorLoop, StopRequest, run_door
from tl.device.door.policy import DoorPolicy, make_policy_config
from tl.device.hw.cameras import Reconnecting
from tl.device.hw.doors import make_door
from tl.device.hw.fakes import FakeCamera, FakeClock
from tl.device.hw.frames import Frame, Source
from tl.device.model.classifier import Classifier
from tl.device.observe.reporters import open_reporters
from tl.device.observe.status import StatusServer, start_status_server
from tl.device.observe.telemetry import LoopView

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class HeldSource(Source):
    """Yields its frames (at 10 fps source time), then waits for `release` before ending."""

    def __init__(self, images, release):
        self.images = images
        self.release = release

    def frames(self):
        for i, image in enumerate(self.images):
            yield Frame(i / 10, i, image)
        self.release.wait(30)


class RunningDoor:
    """A DoorLoop (tiny model, mock door, fake clock) running in a thread, with a LoopView and a server."""

    def __init__(self, model, tmp_path, source, stall_seconds=5.0):
        classifier = Classifier(model)
        policy = DoorPolicy(make_policy_config(classifier.labels, ["dog"], threshold=0.7))
        self.clock = FakeClock(100.0)
        self.events = EventLog(tmp_path / "events.jsonl")
        self.loop = DoorLoop(classifier, policy, make_door("mock", pin_factory=MockFactory()), self.events,
                             clock=self.clock)
        self.view = LoopView(self.loop, stall_seconds=stall_seconds)
        self.server = StatusServer(self.view, "127.0.0.1", 0)
        self.stop = StopRequest()
        self.thread = threading.Thread(target=self.loop.run, args=(source, self.stop), daemon=True)
        self.thread.start()

    def wait(self, predicate, timeout=10.0):
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.01)

    def get(self, path):
        """(status, content type, body) of a GET on the server."""
        try:
            with urllib.request.urlopen(self.server.url + path, timeout=10) as r:
                return r.status, r.headers["Content-Type"], r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers["Content-Type"], e.read()

    def close(self):
        self.stop.request("test over")
        self.thread.join(10)
        self.server.close()
        self.server.close()  # safe twice
        self.events.close()


@pytest.fixture
def dog_at_the_door(tiny_models, tmp_path):
    rng = np.random.default_rng(5)
    release = threading.Event()
    images = [make_scene(k, rng) for k in timeline(("background", 3), ("dog", 6))]
    door = RunningDoor(tiny_models["tiny_int8"], tmp_path, HeldSource(images, release))
    door.wait(lambda: door.loop.stats.frames == len(images))
    try:
        yield door
    finally:
        release.set()
        door.close()


def test_health_is_200_while_frames_come_and_503_when_the_loop_stalls(dog_at_the_door):
    door = dog_at_the_door
    status, kind, body = door.get("/health")
    health = json.loads(body)
    assert status == 200 and kind.startswith("application/json")
    assert health["ok"] and health["door"] == "open" and health["frames"] == 9 and health["classified"] == 9
    door.clock.advance(6.0)  # no frame for 6 s (limit 5 s)
    status, _, body = door.get("/health")
    assert status == 503 and "loop stalled: no frame for 6.0 s" in json.loads(body)["problems"][0]


def test_health_is_503_while_the_camera_is_lost(tiny_models, tmp_path):
    clock, gone = FakeClock(0.0), threading.Event()
    camera = FakeCamera(["fail"], clock=clock, fps=10)
    source = Reconnecting(camera, clock=clock, sleep=lambda s: gone.wait(30))
    door = RunningDoor(tiny_models["tiny_int8"], tmp_path, source)
    try:
        door.wait(lambda: door.loop.camera_lost is not None)
        status, _, body = door.get("/health")
        assert status == 503 and json.loads(body)["problems"] == ["camera lost: fake camera: cannot open it (planned)"]
    finally:
        gone.set()
        door.close()
    with pytest.raises(OSError):
        socket.create_connection(door.server.address, timeout=1).close()  # closed with the door


def test_metrics_are_prometheus_text_with_the_door_and_the_process(dog_at_the_door):
    from prometheus_client.parser import text_string_to_metric_families

    status, kind, body = dog_at_the_door.get("/metrics")
    assert status == 200 and kind.startswith("text/plain")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(body.decode()) for s in family.samples}
    assert samples[("tl_door_open", ())] == 1
    assert samples[("tl_door_state", (("state", "open"),))] == 1
    assert samples[("tl_frames_total", ())] == 9 and samples[("tl_skipped_motion_total", ())] == 0
    assert samples[("tl_events_total", (("event", "door_open"),))] == 1
    assert samples[("tl_healthy", ())] == 1 and samples[("tl_camera_up", ())] == 1
    assert samples[("process_resident_memory_bytes", ())] > 10e6
    assert ("process_open_fds", ()) in samples


def test_status_json_snapshot_and_unknown_paths(dog_at_the_door):
    door = dog_at_the_door
    status = json.loads(door.get("/status.json")[2])
    assert status["door"] == "open" and status["last_animal"]["label"] == "dog"
    assert [e["event"] for e in status["events"]] == ["door_open", "start"]  # newest first
    assert {"fps", "classified_fps", "cpu_percent"} <= set(status["rates"])
    code, kind, jpeg = door.get("/snapshot.jpg")
    assert code == 200 and kind == "image/jpeg"
    assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape == (480, 640, 3)
    assert door.get("/nothing-here")[0] == 404


def test_page_in_headless_chromium_shows_the_open_door_the_dog_and_the_events(dog_at_the_door, tmp_path):
    if CHROMIUM is None:
        pytest.skip("chromium not installed (apt-get install chromium; .ci/run does)")
    door = dog_at_the_door
    profile = tmp_path / "chromium-profile"
    common = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
    dom = subprocess.run([*common, "--dump-dom", door.server.url + "/"], capture_output=True, text=True,
                         timeout=60).stdout
    assert '<div id="door" class="door" style="background:#1b873f">Door open</div>' in dom
    assert 'id="health" class="ok">healthy<' in dom
    assert "Last animal: <b>dog</b> 0.99" in dom or "Last animal: <b>dog</b> 1.00" in dom
    assert dom.count('<tr class="event">') == 2 and "<td>door_open</td><td>dog</td>" in dom
    assert '<img id="snapshot" src="/snapshot.jpg?v=' in dom
    assert 'id="fps"' in dom and 'id="cpu"' in dom and "9 read, 9 classified" in dom
    shot = tmp_path / "status.png"
    subprocess.run([*common, f"--screenshot={shot}", "--window-size=1280,900", door.server.url + "/"],
                   capture_output=True, timeout=60)
    image = cv2.imread(str(shot))
    assert image is not None and image.shape[:2] == (900, 1280)
    # The green door badge and the snapshot are drawn: the page is not blank.
    assert (np.abs(image.astype(int) - (0x3f, 0x87, 0x1b)).sum(axis=2) < 30).sum() > 2000


def test_binding_beyond_loopback_is_warned_about_and_a_taken_port_does_not_stop_the_door(
        tiny_models, tmp_path, caplog):
    caplog.set_level("INFO", logger="tl.device")
    frames = write_frames(tmp_path / "frames", timeline(("background", 3), ("dog", 5)))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = config.load_config(None, {"model": str(tiny_models["tiny_int8"]), "source": str(frames),
                                        "allow": ("dog",), "threshold": 0.7, "http": f"127.0.0.1:{port}",
                                        "events": str(tmp_path / "events.jsonl")})
        stats = run_door(cfg, observers=open_reporters)
    assert f"status page not started: cannot listen on 127.0.0.1:{port}" in caplog.text
    assert stats.frames == 8 and [e["event"] for e in read_events(tmp_path / "events.jsonl")][-1] == "stop"
    assert config.load_config(None, {"http": "8080"}).http == (None, 8080)
    view = type("View", (), {})()
    server = start_status_server(view, ("0.0.0.0", 0))
    try:
        assert "reachable from other machines" in caplog.text
    finally:
        server.close()
