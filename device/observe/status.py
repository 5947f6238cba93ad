"""The local status page, /health and /metrics: a small stdlib HTTP server in its own thread.

    GET /             the page: door state, last snapshot, last events, fps, CPU (reloads itself)
    GET /health       JSON; 200 while healthy, 503 when the camera is lost or the loop stalls
    GET /metrics      Prometheus text format (prometheus-client)
    GET /status.json  everything the page shows, as JSON
    GET /snapshot.jpg the frame of the last door decision, annotated

It binds 127.0.0.1 unless told otherwise: the page has no password, and it shows the porch.
"""

import http.server
import ipaddress
import json
import logging
import socket
import threading
from pathlib import Path

import cv2

from tl.device.door.events import _SNAPSHOT_NAME, annotate
from tl.device.observe.status_page import render_page

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
JSON_TYPE = "application/json; charset=utf-8"


class StatusServer:
    """Serves a LoopView over HTTP until closed.

    Args:
      view: the LoopView to show.
      host: address to bind (default 127.0.0.1; anything else logs a warning).
      port: TCP port (default 8080; 0 picks a free one, see `address`).

    Raises:
      OSError: the address cannot be bound (port in use, no such address).
    """

    def __init__(self, view, host=None, port=None):
        host = host or DEFAULT_HOST
        port = DEFAULT_PORT if port is None else int(port)
        self.view = view
        self._snapshot = _SnapshotCache(view)
        self._metrics = None
        server_class = _Server6 if ":" in host else _Server
        self._httpd = server_class((host, port), _Handler)
        self._httpd.status = self
        self.address = self._httpd.server_address[:2]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="tl-status", daemon=True)
        self._thread.start()
        if not _is_loopback(host):
            log.warning("status page on %s is reachable from other machines: it has no password and shows "
                        "the porch; bind 127.0.0.1 (the default) unless that is what you want", self.url)
        log.info("status page on %s (health: /health, metrics: /metrics)", self.url)

    @property
    def url(self):
        """http://HOST:PORT of the page."""
        host, port = self.address
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        """Stops serving and frees the port; safe twice."""
        if self._httpd is None:
            return
        httpd, self._httpd = self._httpd, None
        httpd.shutdown()
        httpd.server_close()
        self._thread.join(timeout=5)

    def respond(self, path):
        """Returns (status, content type, body bytes) for a GET of `path`."""
        path = path.split("?", 1)[0]
        if path in ("/", "/index.html"):
            page = render_page(self.view.status(), self._snapshot.version())
            return 200, "text/html; charset=utf-8", page.encode("utf-8")
        if path == "/status.json":
            return 200, JSON_TYPE, _json(self.view.status())
        if path == "/health":
            ok, problems = self.view.health()
            body = {"ok": ok, "problems": problems, "door": self.view.door_state(), **self.view.counters()}
            return (200 if ok else 503), JSON_TYPE, _json(body)
        if path == "/metrics":
            return self._metrics_response()
        if path == "/snapshot.jpg":
            data = self._snapshot.jpeg()
            if data is None:
                return 404, "text/plain; charset=utf-8", b"no door decision yet\n"
            return 200, "image/jpeg", data
        return 404, "text/plain; charset=utf-8", b"not found; try /, /health, /metrics, /status.json\n"

    def _metrics_response(self):
        try:
            from tl.device.observe.prometheus import metrics_text
        except ImportError:
            return 501, "text/plain; charset=utf-8", b"prometheus-client is missing: pip install prometheus-client\n"
        if self._metrics is None:
            self._metrics = metrics_text(self.view)
        return 200, *self._metrics()


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True  # a hung browser must not keep the daemon from exiting


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "tl-device"

    def do_GET(self):
        try:
            status, kind, body = self.server.status.respond(self.path)
        except Exception:  # a bug in a page must not kill the server thread
            log.exception("status page: GET %s failed", self.path)
            status, kind, body = 500, "text/plain; charset=utf-8", b"internal error; see the daemon's log\n"
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        log.debug("%s %s", self.address_string(), format % args)


class _SnapshotCache:
    """The JPEG of the last door decision: encoded when first asked for, then reused."""

    def __init__(self, view):
        self.view = view
        self._key = None
        self._data = None
        self._lock = threading.Lock()

    def version(self):
        """A token that changes with the picture /snapshot.jpg serves; None when there is none."""
        last = self.view.loop.last_decision
        if last is not None:
            return f"{last[1]}-{id(last[0])}"
        newest = _newest_snapshot_path(self.view.loop.snapshots)
        return newest.name if newest is not None else None

    def jpeg(self):
        """JPEG bytes of the last decision's frame, else of the newest snapshot file, else None."""
        last = self.view.loop.last_decision
        if last is None:
            return _newest_snapshot(self.view.loop.snapshots)
        image, index, decision = last
        with self._lock:
            if self._key != (id(image), index):
                framed = annotate(image, decision.event, decision.label, decision.score, self.view.loop.roi)
                ok, data = cv2.imencode(".jpg", framed, [cv2.IMWRITE_JPEG_QUALITY, 85])
                self._key, self._data = (id(image), index), data.tobytes() if ok else None
            return self._data


def _newest_snapshot_path(snapshots):
    # After a restart there is no decision in memory yet; the newest file on disk is the next best.
    if snapshots is None:
        return None
    names = sorted(p.name for p in Path(snapshots.folder).iterdir() if _SNAPSHOT_NAME.match(p.name))
    return Path(snapshots.folder) / names[-1] if names else None


def _newest_snapshot(snapshots):
    path = _newest_snapshot_path(snapshots)
    try:
        return path.read_bytes() if path is not None else None
    except OSError:  # pruned between listing and reading
        return None


def _json(obj):
    return (json.dumps(obj, ensure_ascii=False, default=str) + "\n").encode("utf-8")


def _is_loopback(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: assume it is reachable from elsewhere


def start_status_server(view, address):
    """Starts a StatusServer on `address` ((host or None, port or None)); None if it cannot bind.

    The door matters more than its page: a port in use is logged as an error, and the door runs on.
    """
    host, port = address
    try:
        return StatusServer(view, host, port)
    except OSError as e:
        log.error("status page not started: cannot listen on %s:%s (%s); choose another with --http HOST:PORT",
                  host or DEFAULT_HOST, DEFAULT_PORT if port is None else port, e.strerror or e)
        return None
