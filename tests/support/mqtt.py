"""A real mosquitto broker on 127.0.0.1 for the MQTT tests, and a subscriber that records what it gets.

The broker is the Debian `mosquitto` package (.ci/run installs it); tests that need it skip, saying
so, where it is absent. Each broker listens on a free loopback port with its own config and
persistence folder, and dies with the test process (PR_SET_PDEATHSIG) even if pytest is killed.
"""

import ctypes
import getpass
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

MOSQUITTO = shutil.which("mosquitto") or next(
    (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)), None)
HAVE_PAHO = importlib.util.find_spec("paho") is not None
NEEDS_MOSQUITTO = pytest.mark.skipif(
    MOSQUITTO is None or not HAVE_PAHO,
    reason="needs mosquitto (apt-get install mosquitto; .ci/run does) and paho-mqtt (the [dev] extra)")


def free_port():
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent():
    # Runs in the child before exec: SIGTERM it when the test process goes, however it goes.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Broker:
    """One mosquitto on 127.0.0.1:`port`, with persistence (so a restart keeps sessions and queues)."""

    def __init__(self, folder, port=None, password_file=None):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        lines = [f"listener {self.port} 127.0.0.1", "persistence true", f"persistence_location {self.folder}/",
                 f"log_dest file {self.folder / 'mosquitto.log'}", f"user {getpass.getuser()}"]
        if password_file:
            lines += ["allow_anonymous false", f"password_file {password_file}"]
        else:
            lines.append("allow_anonymous true")
        self.conf = self.folder / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc = None

    def start(self, timeout=10.0):
        """Starts the broker and waits (at most `timeout` s) until it accepts connections."""
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, preexec_fn=_die_with_parent)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.proc.stderr.read().decode()} {self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on 127.0.0.1:{self.port} within {timeout} s")

    def stop(self):
        """Stops the broker (SIGTERM: it saves its persistence file first); safe twice."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self.proc is not None:
            self.proc.stderr.close()
        self.proc = None

    def log(self):
        path = self.folder / "mosquitto.log"
        return path.read_text() if path.exists() else ""


class Subscriber:
    """A paho client subscribed (QoS 1) to `topics`, recording (topic, text, retained) as they arrive.

    With a fixed `client_id` and clean_session False, the broker keeps its subscription (and queues
    for it) across the subscriber's or the broker's restarts.
    """

    def __init__(self, port, topics=("#",), client_id=None):
        import paho.mqtt.client as mqtt

        self.messages = []
        self._cond = threading.Condition()
        self._topics = topics
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or "",
                                  clean_session=client_id is None)
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        if not self.subscribed.wait(10):
            raise RuntimeError("the test subscriber did not get its subscription")

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        client.subscribe([(t, 1) for t in self._topics])

    def _on_message(self, client, userdata, msg):
        with self._cond:
            self.messages.append((msg.topic, msg.payload.decode("utf-8"), bool(msg.retain)))
            self._cond.notify_all()

    def wait_for(self, predicate, timeout=10.0):
        """Waits until predicate(messages) is true; returns the messages (fails the test on timeout)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.messages):
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"MQTT: not received within {timeout} s; got {self.messages}")
                self._cond.wait(left)
            return list(self.messages)

    def payloads(self, topic):
        """Payloads received on `topic`, JSON-decoded where they are JSON."""
        with self._cond:
            return [_decode(text) for t, text, _ in self.messages if t == topic]

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def _decode(text):
    try:
        return json.loads(text)
    except ValueError:
        return text
