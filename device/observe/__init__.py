"""Watching a running door: the loop's state as a status page, /health, /metrics, MQTT, a log line.

Lives here: `telemetry` (counters and the view observers read), `status`/`status_page` (the HTTP page,
/health, snapshots), `prometheus` (the /metrics text), `mqtt` (events and door state to a broker, Home
Assistant discovery), `reporters` (starts and stops whichever of these the config asks for).
May import: everything below it — `errors`, `model`, `data`, `recognition`, `hw`, `door`.
"""
