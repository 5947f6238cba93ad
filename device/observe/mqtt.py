"""MQTT for Home Assistant and fleets of doors (paho-mqtt, imported only when a broker is asked for).

Topics, under the prefix (`--mqtt-prefix`, default tl-edge/door):

    <prefix>/events        every event as DESIGN.md's JSON line (QoS 1)
    <prefix>/state         {"door": "open"|"closed", "state": ..., "last_animal": ...}, retained
    <prefix>/availability  "online" / "offline", retained; "offline" is also the last will
    homeassistant/binary_sensor/<node>/door/config         Home Assistant discovery (retained)
    homeassistant/sensor/<node>/last_animal/config

The door never waits for the broker: paho's network thread connects and reconnects with backoff;
while the broker is away events wait in a bounded queue (the oldest dropped first, counted) and go
out, in order, when it is back. A broker that cannot be reached is logged as a warning when it
happens and reminded of every REMIND_SECONDS while it lasts; the status page and /health say so too
(the door itself stays healthy). Credentials come from the config file or the environment
(TL_MQTT_USERNAME, TL_MQTT_PASSWORD, which win), never from the command line.
"""

import collections
import contextlib
import json
import logging
import os
import re
import threading
import time
import uuid

from tl.device import __version__
from tl.device.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_HOST = "localhost"
DEFAULT_PORT = 1883
DISCOVERY_PREFIX = "homeassistant"
ENV_USERNAME, ENV_PASSWORD = "TL_MQTT_USERNAME", "TL_MQTT_PASSWORD"
QUEUE_SIZE = 1000  # events kept while the broker is away (a busy porch makes a few hundred a day)
CLOSE_WAIT_SECONDS = 2.0  # how long stopping waits for the last messages (offline, closed) to go out
REMIND_SECONDS = 300.0  # while the broker is away, a reminder in the log this often


def _paho():
    try:
        import paho.mqtt.client as mqtt
    except ImportError as e:
        raise ConfigError("--mqtt needs paho-mqtt: pip install 'tl-edge[mqtt]'") from e
    return mqtt


class MqttPublisher:
    """Publishes events and the door state to one broker, queueing while it is away.

    Args:
      host, port: the broker.
      prefix: topic prefix.
      username, password: broker credentials, or None.
      queue_size: events kept while disconnected; older ones are dropped (and counted) first.
      keepalive: seconds between pings; the broker sends the last will after 1.5x this of silence.
      retry: (first, longest) seconds between reconnection attempts (doubling in between).
      discovery: Home Assistant's discovery prefix; None or "" sends no discovery.

    Attributes:
      dropped: events dropped because the queue was full.
      clock: monotonic clock (for how long the broker has been away).
    """

    clock = staticmethod(time.monotonic)

    def __init__(self, host=DEFAULT_HOST, port=DEFAULT_PORT, prefix="tl-edge/door", username=None, password=None,
                 queue_size=QUEUE_SIZE, keepalive=30, retry=(1, 30), discovery=DISCOVERY_PREFIX):
        mqtt = _paho()
        self._ok = mqtt.MQTT_ERR_SUCCESS
        self.prefix = prefix
        self.broker = f"{host}:{port}"
        self.node = node_id(prefix)
        self.discovery = discovery
        self.dropped = 0
        self._queue = collections.deque()
        self._queue_size = int(queue_size)
        self._state = None
        self._connected = False
        self._closed = False
        self._away = None  # (since, reason, last reminder) while the broker cannot be reached
        self._lock = threading.Lock()
        self._up = threading.Event()  # set while connected
        # A fresh client id per process: a restarted daemon must not take over (and inherit the will of)
        # the session of the one it replaces.
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{self.node}-{uuid.uuid4().hex[:8]}")
        if username:
            client.username_pw_set(username, password)
        client.will_set(self.topic("availability"), "offline", qos=1, retain=True)
        client.reconnect_delay_set(*retry)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        self._client = client
        client.connect_async(host, port, keepalive)
        client.loop_start()
        log.info("MQTT: publishing to %s under %s/ (connecting in the background)", self.broker, prefix)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def topic(self, name):
        """<prefix>/<name>."""
        return f"{self.prefix}/{name}"

    def publish_event(self, record):
        """Publishes one event (a dict) to <prefix>/events, or queues it while the broker is away."""
        payload = json.dumps(record, ensure_ascii=False)
        with self._lock:
            if self._connected and self._send(self.topic("events"), payload):
                return
            self._enqueue(payload)
        self._remind()

    def publish_state(self, state):
        """Publishes the door state (a dict) to <prefix>/state, retained; only the newest waits for the broker."""
        payload = json.dumps(state, ensure_ascii=False)
        with self._lock:
            self._state = payload
            if self._connected:
                self._send(self.topic("state"), payload, retain=True)

    def status(self):
        """{connected, queued, dropped, broker} for the status page and /metrics."""
        with self._lock:
            return {"connected": self._connected, "queued": len(self._queue), "dropped": self.dropped,
                    "broker": self.broker}

    def warning(self):
        """A sentence for the status page and /health while the broker cannot be reached, else None."""
        with self._lock:
            if self._away is None:
                return None
            since, reason, _ = self._away
            queued, dropped = len(self._queue), self.dropped
        return (f"MQTT broker {self.broker} unreachable for {self.clock() - since:.0f} s ({reason}); "
                f"{queued} events queued, {dropped} dropped")

    def close(self):
        """Says "offline", waits briefly for the last messages, and disconnects; safe twice.

        Events still queued get CLOSE_WAIT_SECONDS for the broker to come (back) first: a replay that
        ends before the first connection is made still delivers its events.
        """
        if self._closed:
            return
        self._closed = True
        if self._queue:
            self._up.wait(CLOSE_WAIT_SECONDS)
        with self._lock:
            connected = self._connected
            last = self._send(self.topic("availability"), "offline", retain=True) if connected else None
        if last is not None:
            try:
                last.wait_for_publish(timeout=CLOSE_WAIT_SECONDS)
            except (RuntimeError, ValueError) as e:
                log.debug("MQTT: offline not confirmed (%s)", e)
        self._client.disconnect()
        self._client.loop_stop()
        if self._queue:
            log.warning("MQTT: %d events were never delivered (broker %s away at stop)", len(self._queue), self.broker)

    def _send(self, topic, payload, retain=False):
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        return info if info.rc == self._ok else None

    def _enqueue(self, payload):
        if len(self._queue) >= self._queue_size:
            self._queue.popleft()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 100 == 0:
                log.warning("MQTT: queue full (%d events); dropping the oldest (%d so far)", self._queue_size,
                            self.dropped)
        self._queue.append(payload)

    def _went_away(self, reason):
        """Notes that the broker cannot be reached; True the first time, or when it starts or stops refusing us."""
        with self._lock:
            now, was = self.clock(), self._away
            self._away = (now, reason, now) if was is None else (was[0], reason, was[2])
            return was is None or was[1].startswith("refused") != reason.startswith("refused")

    def _remind(self):
        """Logs a reminder when the broker has been away another REMIND_SECONDS."""
        with self._lock:
            if self._away is None or self._closed:
                return
            since, reason, reminded = self._away
            now = self.clock()
            if now - reminded < REMIND_SECONDS:
                return
            self._away = (since, reason, now)
            queued, dropped = len(self._queue), self.dropped
        log.warning("MQTT: broker %s still unreachable after %.0f s (%s); %d events queued, %d dropped",
                    self.broker, now - since, reason, queued, dropped)

    def _on_connect_fail(self, client, userdata):
        if self._went_away("cannot connect"):
            log.warning("MQTT: cannot reach the broker %s; the door runs on, events wait (up to %d) and a "
                        "reminder follows every %.0f s while it lasts", self.broker, self._queue_size, REMIND_SECONDS)
        self._remind()

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            if self._went_away(f"refused: {reason_code}"):
                log.error("MQTT: broker %s refused the connection: %s; check mqtt_username/mqtt_password "
                          "(or %s/%s)", self.broker, reason_code, ENV_USERNAME, ENV_PASSWORD)
            self._remind()
            return
        with self._lock:
            # Events sent but not acknowledged before the last disconnect go first, in their order;
            # paho would resend them after whatever is published now, out of order.
            unacked = [m.payload.decode("utf-8") for m in client.drop_out_messages()
                       if m.topic == self.topic("events")]
            backlog = unacked + list(self._queue)
            self._queue.clear()
            self._send(self.topic("availability"), "online", retain=True)
            for topic, config in discovery_configs(self.prefix, self.node, self.discovery):
                self._send(topic, json.dumps(config), retain=True)
            for payload in backlog:
                self._send(self.topic("events"), payload)
            if self._state is not None:
                self._send(self.topic("state"), self._state, retain=True)
            self._connected = True
            self._up.set()
            away, self._away = self._away, None
        back = f" after {self.clock() - away[0]:.0f} s away" if away else ""
        log.info("MQTT: connected to %s%s%s", self.broker, back, f"; sent {len(backlog)} queued events" if backlog else "")

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        with self._lock:
            was, self._connected = self._connected, False
            self._up.clear()
        if was and not self._closed and self._went_away(f"lost: {reason_code}"):
            log.warning("MQTT: lost the broker %s (%s); queueing events (up to %d) until it is back, a reminder "
                        "every %.0f s while it lasts", self.broker, reason_code, self._queue_size, REMIND_SECONDS)


def node_id(prefix):
    """A Home Assistant node id from the topic prefix: tl-edge/door -> tl-edge_door."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", prefix).strip("_") or "tl-edge"


def discovery_configs(prefix, node, discovery=DISCOVERY_PREFIX):
    """[(topic, config)] of the Home Assistant discovery messages: a door binary sensor, a last-animal sensor."""
    if not discovery:
        return []
    common = {
        "state_topic": f"{prefix}/state",
        "availability_topic": f"{prefix}/availability",
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": {"identifiers": [node], "name": f"tl-edge {prefix}", "manufacturer": "tl-edge",
                   "model": "pet door", "sw_version": __version__},
    }
    door = {**common, "name": "Door", "unique_id": f"{node}_door", "device_class": "door",
            "value_template": "{{ value_json.door }}", "payload_on": "open", "payload_off": "closed"}
    animal = {**common, "name": "Last animal", "unique_id": f"{node}_last_animal", "icon": "mdi:paw",
              "value_template": "{{ value_json.last_animal or 'none' }}", "json_attributes_topic": f"{prefix}/state"}
    return [(f"{discovery}/binary_sensor/{node}/door/config", door),
            (f"{discovery}/sensor/{node}/last_animal/config", animal)]


def state_payload(snap):
    """The retained <prefix>/state message for a LoopSnapshot: door, state, last animal (and its score)."""
    animal = snap.last_animal
    label, score, event = (animal.label, animal.score, animal.event) if animal else (None, None, None)
    return {"door": "open" if snap.door_open else "closed", "state": snap.door, "last_animal": label,
            "last_score": score, "last_event": event, "time": round(time.time(), 3)}


def credentials(cfg):
    """(username, password): the environment's TL_MQTT_USERNAME/TL_MQTT_PASSWORD win over the config file's."""
    username = os.environ.get(ENV_USERNAME) or cfg.mqtt_username
    password = os.environ.get(ENV_PASSWORD) or cfg.mqtt_password
    return username, password


@contextlib.contextmanager
def open_publisher(cfg, loop):
    """Runs an MqttPublisher for a RunConfig's --mqtt, fed by a DoorLoop's events and snapshots; yields it.

    The publisher's status (and its warning while the broker is away) goes into the loop's snapshots
    as reporters["mqtt"], where the status page, /health, /metrics and the status line read it.
    """
    host, port = cfg.mqtt
    username, password = credentials(cfg)
    publisher = MqttPublisher(host or DEFAULT_HOST, port or DEFAULT_PORT, cfg.mqtt_prefix, username, password,
                              queue_size=QUEUE_SIZE)

    def on_event(record):
        publisher.publish_event(record)
        publisher.publish_state(state_payload(loop.snapshot()))

    with publisher:
        # Closed: the door was commanded closed when it was made.
        publisher.publish_state(state_payload(loop.snapshot()))
        loop.subscribe(on_event)
        loop.add_reporter("mqtt", lambda: {**publisher.status(), "warning": publisher.warning()})
        try:
            yield publisher
        finally:
            loop.unsubscribe(on_event)
            loop.remove_reporter("mqtt")
