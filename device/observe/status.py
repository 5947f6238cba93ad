"""The local status page, /health and /metrics: a small stdlib HTTP server in its own thread.

    GET /             the page: door state, last snapshot, last events, fps, CPU (reloads itself)
    GET /health       JSON; 200 while healthy, 503 when the camera is lost or the loop stalls
    GET /metrics      Prometheus text format (prometheus-client)
    GET /status.json  everything the page shows, as JSON
    GET /snapshot.jpg the frame of the last door decision, annotated

HEAD works on each of them. It binds 127.0.0.1 unless told otherwise: the page has no password, and
it shows the porch. A connection that sends nothing for IDLE_SECONDS is closed, and at most
MAX_CONNECTIONS are served at once (more are answered 503 and closed), so a stuck or greedy client
cannot pile up threads in the door's process.
"""

import http.server
import ipaddress
import json
import logging
import socket
import threading

import cv2

from tl.device.door.events import annotate, list_snapshots
from tl.device.observe.status_page import render_page

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
JSON_TYPE = "application/json; charset=utf-8"
IDLE_SECONDS = 5.0  # a connection that sends no request (or no more of it) for this long is closed
MAX_CONNECTIONS = 16  # served at once; a browser opens a few, Prometheus one
_BUSY_TEXT = b"too many connections; try again\n"
_BUSY = (b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n"
         b"Content-Length: %d\r\n\r\n%s" % (len(_BUSY_TEXT), _BUSY_TEXT))


class StatusServer:
    """Serves a LoopView over HTTP until closed.

    Args:
      view: the LoopView to show.
      host: address to bind (default 127.0.0.1; anything else logs a warning).
      port: TCP port (default 8080; 0 picks a free one, see `address`).
      idle_seconds: close a connection that sends nothing for this long.
      max_connections: connections served at once.

    Raises:
      OSError: the address cannot be bound (port in use, no such address).
    """

    def __init__(self, view, host=None, port=None, idle_seconds=None, max_connections=None):
        host = host or DEFAULT_HOST
        port = DEFAULT_PORT if port is None else int(port)
        self.view = view
        self._snapshot = _SnapshotCache(view)
        self._metrics = None
        server_class = _Server6 if ":" in host else _Server
        self._httpd = server_class((host, port), _Handler, max_connections or MAX_CONNECTIONS)
        self._httpd.status = self
        self._httpd.idle_seconds = IDLE_SECONDS if idle_seconds is None else float(idle_seconds)
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
        """Returns (status, content type, body bytes) for a GET (or, without the body, a HEAD) of `path`."""
        path = path.split("?", 1)[0]
        if path in ("/", "/index.html"):
            page = render_page(self.view.status(), self._snapshot.version())
            return 200, "text/html; charset=utf-8", page.encode("utf-8")
        if path == "/status.json":
            return 200, JSON_TYPE, _json(self.view.status())
        if path == "/health":
            # Warnings (a broker away) are in the body; the code says only whether the door works.
            ok, body = self.view.health_body()
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
    """A thread per connection, at most `max_connections` of them; the rest are told 503 and closed."""

    daemon_threads = True  # a hung browser must not keep the daemon from exiting
    idle_seconds = IDLE_SECONDS

    def __init__(self, address, handler, max_connections=MAX_CONNECTIONS):
        self._slots = threading.BoundedSemaphore(max_connections)
        super().__init__(address, handler)

    def process_request(self, request, client_address):
        if not self._slots.acquire(blocking=False):
            log.debug("status page: %s refused, %s", client_address[0], "too many connections")
            try:
                request.settimeout(1.0)
                request.sendall(_BUSY)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "tl-device"

    def setup(self):
        # StreamRequestHandler applies `timeout` to the socket: a silent client is dropped after it.
        self.timeout = self.server.idle_seconds
        super().setup()

    def do_GET(self):
        self._answer(send_body=True)

    def do_HEAD(self):
        self._answer(send_body=False)

    def _answer(self, send_body):
        try:
            status, kind, body = self.server.status.respond(self.path)
        except Exception:  # a bug in a page must not kill the server thread
            log.exception("status page: %s %s failed", self.command, self.path)
            status, kind, body = 500, "text/plain; charset=utf-8", b"internal error; see the daemon's log\n"
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if send_body:
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
        snap = self.view.snapshot()
        last = snap.last_decision
        if last is not None:
            return f"{last.frame}-{id(last.image)}"
        newest = _newest_snapshot_path(snap.snapshots)
        return newest.name if newest is not None else None

    def jpeg(self):
        """JPEG bytes of the last decision's frame, else of the newest snapshot file, else None."""
        snap = self.view.snapshot()
        last = snap.last_decision
        if last is None:
            return _newest_snapshot(snap.snapshots)
        with self._lock:
            if self._key != (id(last.image), last.frame):
                framed = annotate(last.image, last.event, last.label, last.score, snap.roi)
                ok, data = cv2.imencode(".jpg", framed, [cv2.IMWRITE_JPEG_QUALITY, 85])
                self._key, self._data = (id(last.image), last.frame), data.tobytes() if ok else None
            return self._data


def _newest_snapshot_path(folder):
    # After a restart there is no decision in memory yet; the newest file on disk is the next best.
    if folder is None:
        return None
    paths = list_snapshots(folder)
    return paths[-1] if paths else None


def _newest_snapshot(folder):
    path = _newest_snapshot_path(folder)
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
