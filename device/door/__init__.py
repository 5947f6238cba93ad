"""The pet door: configuration, the pure policy, the motion gate, the event log, the loop.

Lives here: `config` (every TOML key and `tl-device run` flag, validated once), `policy` (a pure
function of timestamped scores: open, keep open, lock out, close), `motion` (skip frames of an empty
porch), `events` (JSONL events and snapshots), `loop` (frame → gate → classifier → recognizer → policy
→ door + events), `state` (the frozen LoopSnapshot the loop publishes for observers, and RunStats),
`service` (systemd notify and watchdog).
Factories that read the whole config live here; lower rooms take plain arguments.
May import: `tl.device.errors`, `model`, `data`, `recognition`, `hw`.
"""
