"""The pet door: configuration, the pure policy, the motion gate, the event log, the loop.

Lives here: `schema` (one pydantic model per concern: every TOML key and `tl-device run` flag, with
its default, bounds and help), `config` (file and flags meet, validated once; the checks `run` and
`check-config` share), `policy` (a pure function of timestamped scores: open, keep open, lock out,
close), `motion` (skip frames of an empty porch), `events` (JSONL events and snapshots), `loop`
(frame → gate → classifier → recognizer → policy → door + events), `state` (the frozen LoopSnapshot
the loop publishes for observers, and RunStats), `service` (systemd notify and watchdog).
Factories that read the whole config live here; lower rooms take plain arguments.
May import: `tl.device.errors`, `model`, `data`, `recognition`, `hw`.
"""
