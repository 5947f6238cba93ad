"""MQTT for Home Assistant and fleets of doors (paho-mqtt, imported only when a broker is asked for).

Topics, under the prefix (`--mqtt-prefix`, default tl-edge/door):

    <prefix>/events        every event as DESIGN.md's JSON line (QoS 1)
    <prefix>/state         {"door": "open"|"closed", "state": ..., "last_animal": ...}, retained
    <prefix>/availability  "online" / "offline", retained; "offline" is also the last will
    homeassistant/binary_sensor/<node>/door/config         Home Assistant discovery (retained)
    homeassistant/sensor/<node>/last_animal/config

The door never waits for the broker: paho's network thread connects and reconnects with backoff;
while the broker is away events wait in a bounded queue (the oldest dropped first, counted) and go
out, in order, when it is back. Credentials come from the config file or the environment
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
    """

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

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            log.error("MQTT: broker %s refused the connection: %s; check mqtt_username/mqtt_password "
                      "(or %s/%s)", self.broker, reason_code, ENV_USERNAME, ENV_PASSWORD)
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
        log.info("MQTT: connected to %s%s", self.broker, f"; sent {len(backlog)} queued events" if backlog else "")

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        with self._lock:
            was, self._connected = self._connected, False
            self._up.clear()
        if was and not self._closed:
            log.warning("MQTT: lost the broker %s (%s); queueing events (up to %d) until it is back",
                        self.broker, reason_code, self._queue_size)


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


def state_payload(view):
    """The retained <prefix>/state message for a LoopView: door, state, last animal (and its score)."""
    state = view.door_state()
    animal = view.last_animal() or {}
    return {"door": "open" if state == "open" else "closed", "state": state,
            "last_animal": animal.get("label"), "last_score": animal.get("score"),
            "last_event": animal.get("event"), "time": round(time.time(), 3)}


def credentials(cfg):
    """(username, password): the environment's TL_MQTT_USERNAME/TL_MQTT_PASSWORD win over the config file's."""
    username = os.environ.get(ENV_USERNAME) or cfg.mqtt_username
    password = os.environ.get(ENV_PASSWORD) or cfg.mqtt_password
    return username, password


@contextlib.contextmanager
def open_publisher(cfg, view):
    """Runs an MqttPublisher for a RunConfig's --mqtt, fed by a LoopView's events; yields it."""
    host, port = cfg.mqtt
    username, password = credentials(cfg)
    publisher = MqttPublisher(host or DEFAULT_HOST, port or DEFAULT_PORT, cfg.mqtt_prefix, username, password,
                              queue_size=QUEUE_SIZE)

    def on_event(record):
        publisher.publish_event(record)
        publisher.publish_state(state_payload(view))

    listeners = view.loop.events.listeners
    with publisher:
        publisher.publish_state(state_payload(view))  # closed: the door was commanded closed when it was made
        listeners.append(on_event)
        view.extras["mqtt"] = publisher.status
        try:
            yield publisher
        finally:
            listeners.remove(on_event)
