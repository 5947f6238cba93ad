"""Soak: 20,000 replayed frames through `tl-device run` with the mock door; memory, file descriptors, events.

A porch that sees a dog and a denied animal every 20 s (10 fps) is replayed as fast as the daemon
goes, in a child process run exactly as systemd would run it (the CLI, a TOML config, motion
gating, snapshots, the status page, and MQTT when mosquitto is installed). Every 0.5 s the parent
reads the child's resident memory and open file descriptors from /proc and its frame count from
/metrics. After warm-up (the first 10 % of frames) resident memory may grow at most 10 MB and
file descriptors not at all; the events file must hold exactly the expected events.

    python benchmarks/soak.py          # 20,000 frames, motion gating on, then off; Coral's int8 MobileNetV2
                                       # (../shared/data); writes benchmarks/soak.json and soak.md
    python benchmarks/soak.py --frames 2000 --motion --model tiny.tflite --pool POOL --allow dog --deny raccoon \
        --json out.json --markdown out.md
"""

import argparse
import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np

from tl.device.model.image import load_image

REPO = Path(__file__).resolve().parents[1]
CORAL = REPO.parent / "shared" / "data" / "coral"
CORAL_MODEL = CORAL / "tf2_mobilenet_v2_1.0_224_ptq.tflite"
CORAL_LABELS = CORAL / "imagenet_labels.txt"
PHOTOS = {"allow": CORAL / "images" / "imprinting_dog_test_0.png", "deny": CORAL / "images" / "imprinting_cat_test_0.png"}
# One 20 s cycle at 10 fps: (what is on the porch, frames). A dog visits, later a cat (denied).
CYCLE = (("empty", 60), ("allow", 12), ("empty", 80), ("deny", 6), ("empty", 42))
CYCLE_EVENTS = ("door_open", "door_close", "denied")
LIMITS = {"rss_growth_mb": 10.0, "fd_growth": 0}


def write_pool(folder, seed=0, counts=(("empty", 20), ("allow", 12), ("deny", 6))):
    """Writes pool/<kind>/NN.jpg: an empty porch with fresh noise, the Coral dog and cat photos pasted in."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0.8, 1.2, 480, dtype=np.float32)[:, None, None]
    base = np.array([90, 110, 120], np.float32) * ramp
    photos = {k: cv2.resize(load_image(p, bgr=True), (360, 360)) for k, p in PHOTOS.items()}
    for kind, count in counts:
        (folder / kind).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            frame = np.clip(base + rng.normal(0, 6, (480, 640, 3)), 0, 255).astype(np.uint8)
            if kind in photos:
                x, y = 140 + int(rng.integers(-20, 21)), 60 + int(rng.integers(-20, 21))  # walking about
                frame[y : y + 360, x : x + 360] = photos[kind]
            cv2.imwrite(str(folder / kind / f"{i:02d}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return folder


def build_replay(pool, folder, frames):
    """Hard-links pool frames into folder/frame_NNNNN.jpg following CYCLE; returns how many cycles fit."""
    kinds = {k: sorted((pool / k).iterdir()) for k in ("empty", "allow", "deny")}
    folder.mkdir(parents=True, exist_ok=True)
    i = 0
    while i < frames:
        for kind, count in CYCLE:
            for j in range(count):
                if i >= frames:
                    break
                os.link(kinds[kind][(i + j) % len(kinds[kind])], folder / f"frame_{i:05d}.jpg")
                i += 1
    return frames // sum(n for _, n in CYCLE)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_numbers(pid):
    """(resident MB, open fds) of a process, from /proc."""
    with open(f"/proc/{pid}/status") as f:
        rss_kb = int(re.search(r"^VmRSS:\s+(\d+) kB", f.read(), re.M).group(1))
    return rss_kb / 1024.0, len(os.listdir(f"/proc/{pid}/fd"))


def scrape_frames(url):
    """tl_frames_total from /metrics, or None while the page is not up."""
    try:
        with urllib.request.urlopen(url + "/metrics", timeout=2) as r:
            match = re.search(rb"^tl_frames_total (\S+)", r.read(), re.M)
        return int(float(match.group(1))) if match else None
    except OSError:
        return None


def write_config(path, args, source, out, port, mqtt_port):
    """The TOML config the child runs with."""
    allow, deny = args.allow, args.deny
    if allow is None:  # ImageNet: dog breeds open, cats are denied, the other classes do neither
        labels = CORAL_LABELS.read_text().splitlines()
        allow, deny = labels[152:270], labels[281:286]
    lines = [f'model = "{args.model}"', f'source = "{source}"', "fps = 10", "realtime = false",
             f"allow = {json.dumps(list(allow))}", f"deny = {json.dumps(list(deny))}", f"threshold = {args.threshold}",
             'votes = "3/5"', "open_seconds = 2", "lockout_seconds = 3", 'door = "mock"', "threads = 2",
             f'events = "{out / "events.jsonl"}"', f'snapshots = "{out / "snapshots"}"', "snapshot_keep = 20",
             "status_seconds = 30", f"motion = {str(args.motion).lower()}", f'http = "127.0.0.1:{port}"']
    if args.model == CORAL_MODEL:
        lines += [f'labels = "{CORAL_LABELS}"', 'roi = "80,0,480,480"']
    if mqtt_port:
        lines += [f'mqtt = "127.0.0.1:{mqtt_port}"', 'mqtt_prefix = "soak/door"']
    path.write_text("\n".join(lines) + "\n")
    return path


def start_broker(folder):
    """A mosquitto on a free loopback port, or (None, None) when it (or paho-mqtt) is not installed."""
    exe = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None)
    if exe is None or importlib.util.find_spec("paho") is None:
        return None, None
    port = free_port()
    conf = folder / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    return None, None


def count_mqtt_events(port, topic="soak/door/events"):
    """Starts a subscriber counting messages on `topic`; returns (client, counter dict)."""
    import paho.mqtt.client as mqtt

    got = {"events": 0}
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
    client.on_message = lambda c, u, m: got.__setitem__("events", got["events"] + 1)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client, got


def run_soak(args, work):
    """Runs the soak in `work`; returns the result dict."""
    pool = args.pool or write_pool(work / "pool")
    cycles = build_replay(pool, work / "frames", args.frames)
    broker, mqtt_port = start_broker(work) if args.mqtt else (None, None)
    subscriber, received = count_mqtt_events(mqtt_port) if mqtt_port else (None, None)
    port = free_port()
    cfg = write_config(work / "door.toml", args, work / "frames", work, port, mqtt_port)
    cmd = [sys.executable, "-m", "tl.device.cli.tl_device", "-q", "run", "--config", str(cfg)]
    samples = []
    started = time.monotonic()
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    try:
        while child.poll() is None:
            try:  # /proc first: the scrape's own connection must not be counted as an open file
                rss, fds = proc_numbers(child.pid)
            except (OSError, AttributeError):
                break  # it just ended
            frames = scrape_frames(f"http://127.0.0.1:{port}")
            if frames is not None:
                samples.append({"t": round(time.monotonic() - started, 2), "frames": frames, "rss_mb": round(rss, 2),
                                "fds": fds})
            time.sleep(0.5)
        _, err = child.communicate(timeout=600)
    finally:
        child.kill()
        if subscriber is not None:
            time.sleep(0.5)
            subscriber.loop_stop()
        if broker is not None:
            broker.terminate()
            broker.wait(10)
    if child.returncode != 0:
        raise SystemExit(f"the daemon failed (exit {child.returncode}):\n{err[-3000:]}")
    return summarise(args, samples, work / "events.jsonl", cycles, time.monotonic() - started, received)


def summarise(args, samples, events_path, cycles, seconds, received):
    """Growth after warm-up, and whether the events file is complete."""
    warm = [s for s in samples if s["frames"] >= args.frames * args.warmup]
    if not warm:
        raise SystemExit("no sample after warm-up: the run was too short to measure; use more --frames")
    base = warm[0]
    events = [json.loads(line) for line in events_path.read_text().splitlines()]
    kinds = [e["event"] for e in events]
    expected = ["start", *CYCLE_EVENTS * cycles, "stop"]
    stop = events[-1]
    result = {
        "frames": args.frames, "model": Path(args.model).name, "motion": args.motion, "seconds": round(seconds, 1),
        "frames_per_second": round(args.frames / seconds, 1),
        "rss_mb": {"after_warmup": base["rss_mb"], "max": max(s["rss_mb"] for s in warm), "end": warm[-1]["rss_mb"]},
        "fds": {"after_warmup": base["fds"], "max": max(s["fds"] for s in warm), "end": warm[-1]["fds"]},
        "samples": len(samples),
        "events": {"lines": len(events), "expected": len(expected), "complete": kinds == expected},
        "stop": {k: stop.get(k) for k in ("frames", "classified", "skipped_motion", "unreadable")},
        "mqtt_events_received": None if received is None else received["events"],
    }
    result["rss_growth_mb"] = round(result["rss_mb"]["max"] - base["rss_mb"], 2)
    # End against start: a leak only grows; a snapshot's temp file open at a sample is not one.
    result["fd_growth"] = result["fds"]["end"] - base["fds"]
    result["passed"] = (result["rss_growth_mb"] <= LIMITS["rss_growth_mb"] and result["fd_growth"] <= LIMITS["fd_growth"]
                        and result["events"]["complete"] and stop.get("frames") == args.frames)
    return result


def markdown(results):
    """The soak results as Markdown: how they were measured, then one row per run."""
    from tl.device.data.sysinfo import machine_info

    m = machine_info()
    rows = [
        "# Soak: 20,000 replayed frames through `tl-device run`", "",
        f"`python benchmarks/soak.py [--no-motion]` on {m['cpu']}, {m['cores']} cores, {m['os']}, Python {m['python']}.",
        "A porch replayed as fast as the daemon goes (10 fps source time: 2,000 s of porch, a dog and a denied cat",
        "every 20 s), run by the CLI from a TOML config with the mock door, snapshots (keep 20), the status page and",
        "MQTT to a local mosquitto. Every 0.5 s the parent reads the child's VmRSS and /proc/PID/fd and its frame count",
        "from /metrics. Growth is measured from the first sample after warm-up (10 % of the frames): RSS to its",
        f"maximum (limit {LIMITS['rss_growth_mb']:g} MB), open fds to the end (limit {LIMITS['fd_growth']}; the maximum",
        "includes a snapshot being written or a request being served at that instant). Events complete: the file",
        "holds exactly start, 100 x (door_open, door_close, denied), stop; MQTT events: what a subscriber received.", "",
        "| frames | model | motion | s | fps | RSS after warm-up → max (MB) | growth (MB) | fds start → max → end | "
        "classified | events complete | MQTT events | pass |", "|" + " --- |" * 12]
    for r in results:
        rows.append(f"| {r['frames']} | {r['model']} | {'on' if r['motion'] else 'off'} | {r['seconds']} | "
                    f"{r['frames_per_second']} | {r['rss_mb']['after_warmup']} → {r['rss_mb']['max']} | "
                    f"{r['rss_growth_mb']} | {r['fds']['after_warmup']} → {r['fds']['max']} → {r['fds']['end']} | "
                    f"{r['stop']['classified']} | {r['events']['lines']}/{r['events']['expected']} "
                    f"{'yes' if r['events']['complete'] else 'NO'} | {r['mqtt_events_received']} | "
                    f"{'yes' if r['passed'] else 'NO'} |")
    return "\n".join(rows) + "\n"


def main():
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=20000)
    parser.add_argument("--model", type=Path, default=CORAL_MODEL)
    parser.add_argument("--pool", type=Path, help="folder with empty/, allow/, deny/ frames (default: Coral photos)")
    parser.add_argument("--allow", action="append", help="allowed class (default: ImageNet's dog breeds)")
    parser.add_argument("--deny", action="append", default=None, help="denied class (default: ImageNet's cats)")
    parser.add_argument("--threshold", type=float, default=0.25)
    parser.add_argument("--motion", action=argparse.BooleanOptionalAction, default=None,
                        help="motion gating on (--motion) or off (--no-motion); default: one run of each")
    parser.add_argument("--mqtt", action=argparse.BooleanOptionalAction, default=True, help="with mosquitto, if installed")
    parser.add_argument("--warmup", type=float, default=0.1, help="share of frames before measuring growth")
    parser.add_argument("--json", type=Path, default=here / "soak.json", help="write the results here")
    parser.add_argument("--markdown", type=Path, default=here / "soak.md", help="write the table here")
    args = parser.parse_args()
    if not args.model.is_file():
        raise SystemExit(f"model {args.model} not found; pass --model (and --pool, --allow, --deny)")
    results = []
    for motion in ([True, False] if args.motion is None else [args.motion]):
        args.motion = motion
        with tempfile.TemporaryDirectory(prefix="tl-soak-") as tmp:
            results.append(run_soak(args, Path(tmp)))
        print(json.dumps(results[-1], indent=2), flush=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    args.markdown.write_text(markdown(results))
    sys.exit(0 if all(r["passed"] for r in results) else 1)


if __name__ == "__main__":
    main()
