"""Starts what reports on a running door, as its RunConfig asks: the status page and MQTT."""

import contextlib

from tl.device.observe.telemetry import LoopView

# /health fails after this many seconds without a frame (or at least this many frame intervals).
STALL_SECONDS = 10.0
STALL_FRAMES = 5


def stall_seconds(fps):
    """How long the loop may go without a frame before /health says it stalled."""
    return max(STALL_SECONDS, STALL_FRAMES / fps)


@contextlib.contextmanager
def open_reporters(cfg, loop, source=None):
    """Starts the reporters `cfg` asks for (--http, --mqtt) on a DoorLoop; stops them on exit.

    Without either, nothing is started and nothing listens to the events. The reporters see the
    loop only through `snapshot()`, `subscribe` and `add_reporter`.

    Args:
      cfg: the RunConfig.
      loop: the DoorLoop.
      source: its frame source (unused: the snapshots count its unreadable frames); `run_door`
        passes it to every observer.

    Yields:
      The LoopView, or None when nothing reports.
    """
    if cfg.http is None and cfg.mqtt is None:
        yield None
        return
    with contextlib.ExitStack() as stack:
        if cfg.mqtt is not None:
            from tl.device.observe.mqtt import open_publisher

            stack.enter_context(open_publisher(cfg, loop))
        view = LoopView(loop, stall_seconds=stall_seconds(cfg.fps))
        stack.callback(view.close)
        if cfg.http is not None:
            from tl.device.observe.status import start_status_server

            server = start_status_server(view, cfg.http)
            if server is not None:
                stack.callback(server.close)
        yield view
