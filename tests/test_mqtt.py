"""MQTT: events, retained door state, availability and Home Assistant discovery, seen by a real subscriber."""

import json
import subprocess
import sys
import time
import types
import urllib.request

import pytest
from click.testing import CliRunner

pytest.importorskip("paho.mqtt.client")
pytest.importorskip("gpiozero")

from tests.support.loops import FakeLoop
from tests.support.mqtt import HAVE_PAHO, MOSQUITTO, NEEDS_MOSQUITTO, Broker, Subscriber, free_port
from tests.support.scenes import timeline, write_frames
from tl.device.cli.tl_device import main
from tl.device.door import config
from tl.device.door.events import read_events
from tl.device.door.loop import run_door
from tl.device.door.state import status_line
from tl.device.errors import ConfigError
from tl.device.observe import mqtt
from tl.device.observe.reporters import open_reporters
from tl.device.observe.status import StatusServer
from tl.device.observe.telemetry import LoopView

PREFIX = "test/door"
VISITS = timeline(("background", 6), ("dog", 6), ("background", 25), ("raccoon", 3), ("background", 4))


@pytest.fixture(scope="module")
def visits(tmp_path_factory):
    return write_frames(tmp_path_factory.mktemp("visits") / "frames", VISITS, seed=21)


def door_config(model, source, tmp_path, port, **extra):
    values = {"model": str(model), "source": str(source), "allow": ("dog",), "door": "mock", "threshold": 0.7,
              "open_seconds": 2.0, "events": str(tmp_path / "events.jsonl"), "mqtt": f"127.0.0.1:{port}",
              "mqtt_prefix": PREFIX, **extra}
    return config.load_config(None, values)


def test_discovery_describes_a_door_sensor_and_a_last_animal_sensor():
    (door_topic, door), (animal_topic, animal) = mqtt.discovery_configs("tl-edge/door", mqtt.node_id("tl-edge/door"))
    assert door_topic == "homeassistant/binary_sensor/tl-edge_door/door/config"
    assert animal_topic == "homeassistant/sensor/tl-edge_door/last_animal/config"
    assert door["state_topic"] == animal["state_topic"] == "tl-edge/door/state"
    assert door["availability_topic"] == "tl-edge/door/availability"
    assert (door["device_class"], door["payload_on"], door["payload_off"]) == ("door", "open", "closed")
    assert door["unique_id"] != animal["unique_id"] and door["device"] == animal["device"]
    assert mqtt.discovery_configs("p", "n", discovery="") == []


def test_credentials_come_from_the_file_or_the_environment_never_the_command_line(tmp_path, monkeypatch):
    path = tmp_path / "door.toml"
    path.write_text('mqtt = "broker.lan"\nmqtt_username = "door"\nmqtt_password = "from-file"\n')
    cfg = config.load_config(path)
    assert cfg.mqtt == ("broker.lan", None)
    monkeypatch.delenv(mqtt.ENV_USERNAME, raising=False)
    monkeypatch.delenv(mqtt.ENV_PASSWORD, raising=False)
    assert mqtt.credentials(cfg) == ("door", "from-file")
    monkeypatch.setenv(mqtt.ENV_PASSWORD, "from-env")
    assert mqtt.credentials(cfg) == ("door", "from-env")
    for flag in ("--mqtt-password", "--mqtt-username"):
        result = CliRunner().invoke(main, ["run", flag, "secret", "--check-config"])
        assert result.exit_code == 2 and "No such option" in result.output
    with pytest.raises(ConfigError, match="wildcards"):
        config.load_config(None, {"mqtt_prefix": "door/#"})


def test_missing_paho_is_a_config_error_that_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "paho.mqtt.client", None)
    with pytest.raises(ConfigError, match=r"tl-edge\[mqtt\]"):
        mqtt.MqttPublisher("127.0.0.1", 1)


@NEEDS_MOSQUITTO
def test_a_subscriber_sees_every_event_the_state_and_discovery(tiny_models, visits, tmp_path, broker):
    sub = Subscriber(broker.port, topics=(f"{PREFIX}/#", "homeassistant/#"))
    try:
        run_door(door_config(tiny_models["tiny_int8"], visits, tmp_path, broker.port), observers=open_reporters)
        sub.wait_for(lambda m: (f"{PREFIX}/availability", "offline", False) in m)
    finally:
        sub.close()
    written = read_events(tmp_path / "events.jsonl")
    assert [e["event"] for e in written] == ["start", "door_open", "door_close", "denied", "stop"]
    assert sub.payloads(f"{PREFIX}/events") == written  # DESIGN.md's JSON, every event, in order
    states = sub.payloads(f"{PREFIX}/state")
    assert states[0]["door"] == "closed" and states[0]["last_animal"] is None  # closed at start
    assert {(s["door"], s["last_animal"]) for s in states} >= {("open", "dog"), ("closed", "dog")}
    assert states[-1]["state"] == "locked" and states[-1]["last_animal"] == "raccoon"
    assert sub.payloads(f"{PREFIX}/availability") == ["online", "offline"]
    # A subscriber that comes later (Home Assistant after a reboot) gets the retained ones.
    late = Subscriber(broker.port, topics=(f"{PREFIX}/#", "homeassistant/#"))
    try:
        got = {t: text for t, text, retained in late.wait_for(lambda m: len(m) >= 4) if retained}
    finally:
        late.close()
    assert json.loads(got[f"{PREFIX}/state"])["last_animal"] == "raccoon"
    assert got[f"{PREFIX}/availability"] == "offline"
    door_config_msg = json.loads(got["homeassistant/binary_sensor/test_door/door/config"])
    assert door_config_msg["state_topic"] == f"{PREFIX}/state"
    assert "homeassistant/sensor/test_door/last_animal/config" in got


@NEEDS_MOSQUITTO
def test_events_wait_for_a_restarted_broker_and_arrive_in_order(tmp_path, broker):
    sub = Subscriber(broker.port, topics=(f"{PREFIX}/events",), client_id="ha-restart")
    pub = mqtt.MqttPublisher("127.0.0.1", broker.port, PREFIX, retry=(0.2, 1), discovery="")
    try:
        pub.publish_event({"n": 0})
        sub.wait_for(lambda m: len(m) == 1)
        broker.stop()
        deadline = time.monotonic() + 5
        while pub.status()["connected"] and time.monotonic() < deadline:
            time.sleep(0.02)
        for n in range(1, 6):  # the broker is away: these wait in the queue
            pub.publish_event({"n": n})
        assert pub.status() == {"connected": False, "queued": 5, "dropped": 0, "broker": f"127.0.0.1:{broker.port}"}
        broker.start()
        sub.wait_for(lambda m: len({t for t in m}) >= 6, timeout=15)
        assert pub.status()["queued"] == 0
    finally:
        pub.close()
        pub.close()  # safe twice
        sub.close()
    numbers = [json.loads(text)["n"] for _, text, _ in sub.messages]
    assert list(dict.fromkeys(numbers)) == [0, 1, 2, 3, 4, 5]  # QoS 1: at least once, in order


def test_the_door_works_without_a_broker_and_the_queue_is_bounded(tiny_models, visits, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(mqtt, "QUEUE_SIZE", 2)
    monkeypatch.setattr(mqtt, "CLOSE_WAIT_SECONDS", 0.2)
    caplog.set_level("INFO", logger="tl.device")
    port = free_port()  # nobody listens there
    plain = tmp_path / "plain"
    plain.mkdir()
    run_door(door_config(tiny_models["tiny_int8"], visits, plain, port, mqtt=None), observers=open_reporters)
    stats = run_door(door_config(tiny_models["tiny_int8"], visits, tmp_path, port), observers=open_reporters)
    strip = lambda events: [{k: v for k, v in e.items() if k != "reason"} for e in events]  # noqa: E731
    assert strip(read_events(tmp_path / "events.jsonl")) == strip(read_events(plain / "events.jsonl"))
    assert stats.frames == len(VISITS)
    assert "queue full (2 events); dropping the oldest" in caplog.text
    assert caplog.text.count("MQTT: cannot reach the broker") == 1  # said at once, not only at stop
    assert "3 events were never delivered" not in caplog.text and "2 events were never delivered" in caplog.text


@NEEDS_MOSQUITTO
def test_a_broker_that_refuses_the_password_is_logged_and_the_door_runs_on(tiny_models, visits, tmp_path, caplog,
                                                                          monkeypatch):
    monkeypatch.setattr(mqtt, "CLOSE_WAIT_SECONDS", 0.2)  # the refused run's queue would wait for nothing
    caplog.set_level("INFO", logger="tl.device")
    passwords = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), "door", "right"], check=True, capture_output=True)
    b = Broker(tmp_path / "secure", password_file=passwords).start()
    try:
        base = vars(door_config(tiny_models["tiny_int8"], visits, tmp_path, b.port))
        good = config.build_config(base, {"mqtt_username": "door", "mqtt_password": "right"})
        run_door(good, observers=open_reporters)
        assert "MQTT: connected" in caplog.text
        caplog.clear()
        bad = config.build_config(vars(good), {"mqtt_password": "wrong"})
        stats = run_door(bad, observers=open_reporters)
        assert "refused the connection" in caplog.text and stats.frames == len(VISITS)
    finally:
        b.stop()


def test_an_unreachable_broker_is_warned_about_once_reminded_and_shown_on_health(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(mqtt, "REMIND_SECONDS", 0.3)
    monkeypatch.setattr(mqtt, "CLOSE_WAIT_SECONDS", 0.1)
    monkeypatch.delenv(mqtt.ENV_USERNAME, raising=False)
    monkeypatch.delenv(mqtt.ENV_PASSWORD, raising=False)
    caplog.set_level("INFO", logger="tl.device")
    port = free_port()  # nobody listens there
    cfg = types.SimpleNamespace(mqtt=("127.0.0.1", port), mqtt_prefix=PREFIX, mqtt_username=None, mqtt_password=None)
    loop = FakeLoop(running=True)
    view = LoopView(loop)
    server = StatusServer(view, "127.0.0.1", 0)
    try:
        with mqtt.open_publisher(cfg, loop) as publisher:
            deadline = time.monotonic() + 10
            while "cannot reach the broker" not in caplog.text:
                assert time.monotonic() < deadline, "no warning while the broker is away"
                time.sleep(0.02)
            time.sleep(0.35)
            # A reminder is due: the next event says it.
            loop.emit({"ts": 1.0, "frame": 10, "event": "denied", "label": "raccoon", "score": 0.9, "reason": "r"})
            assert caplog.text.count("MQTT: cannot reach the broker") == 1
            assert f"MQTT: broker 127.0.0.1:{port} still unreachable after" in caplog.text
            with urllib.request.urlopen(server.url + "/health", timeout=10) as r:
                code, health = r.status, json.loads(r.read())
            assert code == 200 and health["ok"]  # the door itself is fine
            (warning,) = health["warnings"]
            assert warning.startswith(f"MQTT broker 127.0.0.1:{port} unreachable for") and "1 events queued" in warning
            with urllib.request.urlopen(server.url + "/", timeout=10) as r:
                assert f"MQTT broker 127.0.0.1:{port} unreachable" in r.read().decode()
            assert "unreachable" in status_line(loop.snapshot())  # the periodic log line says it too
            if MOSQUITTO and HAVE_PAHO:  # the broker comes: the warning goes
                broker = Broker(tmp_path / "broker", port=port).start()
                try:
                    deadline = time.monotonic() + 15
                    while publisher.warning() is not None:
                        assert time.monotonic() < deadline, "never reconnected"
                        time.sleep(0.05)
                    assert "s away; sent 1 queued events" in caplog.text
                    assert loop.snapshot().warnings() == []
                finally:
                    publisher.close()
                    broker.stop()
    finally:
        server.close()
        view.close()
    assert loop.listeners() == 0 and loop.snapshot().reporters == {}
