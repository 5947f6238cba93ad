"""Watching a running door: the loop's state as a status page, /health, /metrics, MQTT, a log line.

Every one of them reads the frozen `LoopSnapshot` the loop publishes (`DoorLoop.snapshot()`) and
subscribes to its events (`DoorLoop.subscribe`); none reaches into the loop's parts.
Lives here: `telemetry` (the view over the snapshots: health, rates, recent events), `status`/`status_page`
(the HTTP page, /health, snapshots), `prometheus` (the /metrics text), `mqtt` (events and door state to a broker, Home
Assistant discovery), `reporters` (starts and stops whichever of these the config asks for).
May import: everything below it — `errors`, `model`, `data`, `recognition`, `hw`, `door`.
"""
