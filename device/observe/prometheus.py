"""/metrics in the Prometheus text format, through prometheus-client (imported when first asked for).

The numbers are read from one loop snapshot per scrape (a custom collector over the LoopView), so
the door's loop never touches a metrics object; process memory, CPU and open files come from
prometheus-client's own ProcessCollector.
"""

DOOR_STATES = ("open", "closed", "locked")


def metrics_text(view):
    """Returns a function giving (content type, body bytes) of the metrics of `view` (a LoopView).

    Raises:
      ImportError: prometheus-client is not installed.
    """
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector, generate_latest

    # A registry of our own: a second door in one process (tests) does not clash with the first.
    registry = CollectorRegistry()
    registry.register(_DoorCollector(view))
    ProcessCollector(registry=registry)

    def render():
        return CONTENT_TYPE_LATEST, generate_latest(registry)

    return render


class _DoorCollector:
    def __init__(self, view):
        self.view = view

    def collect(self):
        """Yields the door's metric families (prometheus-client's collector protocol)."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        view = self.view
        snap = view.snapshot()
        counters = snap.counters()
        ok, _ = view.health(snap)
        state = snap.door
        yield GaugeMetricFamily("tl_door_open", "1 while the door is commanded open", value=int(state == "open"))
        door = GaugeMetricFamily("tl_door_state", "the door's state (1 for the current one)", labels=["state"])
        for name in DOOR_STATES:
            door.add_metric([name], int(state == name))
        yield door
        yield GaugeMetricFamily("tl_healthy", "1 while /health answers 200", value=int(ok))
        yield GaugeMetricFamily("tl_camera_up", "1 while the camera delivers frames",
                                value=int(not snap.camera_lost))
        yield GaugeMetricFamily("tl_seconds_since_frame", "seconds since the loop last handled a frame",
                                value=snap.seconds_since_frame)
        for key, help_text in (("frames", "frames read from the source"),
                               ("classified", "frames the model looked at"),
                               ("skipped_motion", "frames passed over by the motion gate"),
                               ("unreadable", "frames that could not be decoded"),
                               ("events_lost", "events that could not be written to the events file")):
            yield CounterMetricFamily(f"tl_{key}", help_text, value=counters[key])
        events = CounterMetricFamily("tl_events", "events written, by kind", labels=["event"])
        for name, count in sorted(snap.events.items()):
            events.add_metric([name], count)
        yield events
        yield GaugeMetricFamily("tl_invoke_seconds", "duration of the last model invoke",
                                value=counters["invoke_ms"] / 1000.0)
        info = snap.reporters.get("mqtt")
        if info is not None and "connected" in info:
            yield GaugeMetricFamily("tl_mqtt_connected", "1 while connected to the MQTT broker",
                                    value=int(info["connected"]))
            yield GaugeMetricFamily("tl_mqtt_queued", "messages waiting for the broker", value=info["queued"])
            yield CounterMetricFamily("tl_mqtt_dropped", "messages dropped because the queue was full",
                                      value=info["dropped"])
