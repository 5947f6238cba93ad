"""The status page's HTML: rendered on the server from a LoopView status dict, no JavaScript needed.

It reloads itself every few seconds; everything shown comes from `LoopView.status()`, and every
piece of text is escaped (labels and reasons come from model files and config).
"""

import html
import time

REFRESH_SECONDS = 5
DOOR_COLOURS = {"open": "#1b873f", "closed": "#57606a", "locked": "#cf222e"}

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #1f2328; background: #f6f8fa; }
h1 { font-size: 1.4rem; margin: 0 0 1rem; }
.row { display: flex; flex-wrap: wrap; gap: 1.5rem; align-items: flex-start; }
.card { background: #fff; border: 1px solid #d0d7de; border-radius: 8px; padding: 1rem; }
.door { font-size: 2.2rem; font-weight: 700; color: #fff; padding: .4rem 1.2rem; border-radius: 8px; }
.ok { color: #1b873f; } .bad { color: #cf222e; font-weight: 600; } .warn { color: #9a6700; }
table { border-collapse: collapse; font-size: .9rem; }
td, th { text-align: left; padding: .25rem .6rem; border-bottom: 1px solid #eaeef2; }
th { background: #f6f8fa; }
img { max-width: 480px; width: 100%; border-radius: 6px; }
.muted { color: #57606a; }
"""


def render_page(status, snapshot=None):
    """Returns the whole page for a `LoopView.status()` dict.

    Args:
      status: from `LoopView.status()`.
      snapshot: a token that changes with the last decision's frame (for /snapshot.jpg?v=...),
        or None when there is no frame to show.
    """
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>tl-edge door: {_e(status['door'])}</title><style>{_STYLE}</style></head><body>",
        "<h1>tl-edge pet door</h1>",
        '<div class="row">',
        _door_card(status),
        _snapshot_card(snapshot),
        _numbers_card(status),
        "</div>",
        _events_card(status["events"]),
        f'<p class="muted">Updated {_clock(status["time"])}; reloads every {REFRESH_SECONDS} s. '
        'JSON: <a href="/status.json">/status.json</a>, <a href="/health">/health</a>, '
        '<a href="/metrics">/metrics</a></p>',
        "</body></html>",
    ]
    return "\n".join(parts)


def _door_card(status):
    door = status["door"]
    health = ('<p id="health" class="ok">healthy</p>' if status["ok"] else
              '<p id="health" class="bad">' + "<br>".join(_e(p) for p in status["problems"]) + "</p>")
    warnings = "".join(f'<p class="warn">{_e(w)}</p>' for w in status["warnings"])
    animal = status["last_animal"]
    if animal:
        seen = (f'<p id="last-animal">Last animal: <b>{_e(animal["label"])}</b> {_score(animal["score"])} '
                f'({_e(animal["event"])}, {_clock(animal["wall"])})</p>')
    else:
        seen = '<p id="last-animal" class="muted">No animal seen yet</p>'
    colour = DOOR_COLOURS.get(door, "#57606a")
    return (f'<div class="card"><div id="door" class="door" style="background:{colour}">Door {_e(door)}</div>'
            f"{health}{warnings}{seen}</div>")


def _snapshot_card(snapshot):
    if snapshot is None:
        body = ('<p id="snapshot" class="muted">No door decision yet: the frame that opens or locks the door '
                "shows here.</p>")
    else:
        body = f'<img id="snapshot" src="/snapshot.jpg?v={_e(snapshot)}" alt="the frame of the last door decision">'
    return f'<div class="card"><b>Last decision</b><br>{body}</div>'


def _numbers_card(status):
    c, r = status["counters"], status["rates"]
    load = status["load"]
    motion = status["motion"]
    rows = [
        ("Frames per second", f'{r["fps"]:.1f} read, {r["classified_fps"]:.1f} classified', "fps"),
        ("CPU", f'{r["cpu_percent"]:.0f} % of one core ({status["cpus"]} cores)'
                + (f", load {load[0]:.2f}" if load else ""), "cpu"),
        ("Frames", f'{c["frames"]} read, {c["classified"]} classified, {c["skipped_motion"]} skipped (no motion), '
                   f'{c["unreadable"]} unreadable', "frames"),
        ("Model invoke", f'{c["invoke_ms"]:.1f} ms', "invoke"),
        ("Motion gating", "off" if motion is None else
         f'on: {motion["area"]:.1%} of the ROI by > {motion["delta"]} levels, '
         f'heartbeat {motion["heartbeat_seconds"]:g} s',
         "motion"),
    ]
    mqtt = status["reporters"].get("mqtt")
    if mqtt and "connected" in mqtt:
        state = "connected" if mqtt["connected"] else "not connected"
        text = f'{state} to {mqtt["broker"]}, {mqtt["queued"]} queued, {mqtt["dropped"]} dropped'
        rows.append(("MQTT", text, "mqtt"))
    cells = "".join(f'<tr><th>{_e(name)}</th><td id="{key}">{_e(value)}</td></tr>' for name, value, key in rows)
    return f'<div class="card"><table>{cells}</table></div>'


def _events_card(events):
    if not events:
        return '<div class="card"><b>Last events</b><p class="muted">none yet</p></div>'
    rows = "".join(
        f'<tr class="event"><td>{_clock(e["wall"])}</td><td>{e["ts"]:.1f}</td><td>{_e(e["frame"])}</td>'
        f'<td>{_e(e["event"])}</td><td>{_e(e["label"])}</td><td>{_score(e["score"])}</td><td>{_e(e["reason"])}</td></tr>'
        for e in events)
    return ('<div class="card" style="margin-top:1.5rem"><b>Last events</b> <span class="muted">(newest first)</span>'
            '<table id="events"><tr><th>time</th><th>ts</th><th>frame</th><th>event</th><th>label</th><th>score</th>'
            f"<th>reason</th></tr>{rows}</table></div>")


def _e(value):
    return "" if value is None else html.escape(str(value))


def _score(score):
    return "" if score is None else f"{score:.2f}"


def _clock(wall):
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(wall))
