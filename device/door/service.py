"""systemd integration without dependencies: sd_notify READY/STATUS/STOPPING and the watchdog.

Everything is a no-op when the process was not started by systemd with NOTIFY_SOCKET set.
"""

import logging
import os
import socket
import time

log = logging.getLogger(__name__)


def notify(message):
    """Sends one sd_notify message (e.g. "READY=1"); returns whether it was sent."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(message.encode("utf-8"))
    except OSError as e:
        log.debug("sd_notify %r failed: %s", message, e)
        return False
    return True


class Watchdog:
    """Pings systemd's watchdog (WATCHDOG=1) at half the interval it asked for (WATCHDOG_USEC).

    Args:
      clock: a monotonic clock in seconds.
    """

    def __init__(self, clock=time.monotonic):
        usec = os.environ.get("WATCHDOG_USEC", "")
        self.interval = int(usec) / 2e6 if usec.isdigit() and int(usec) > 0 else None
        self.clock = clock
        self._last = float("-inf")

    def ping(self):
        """Pings if the interval has passed since the last ping (cheap to call every frame)."""
        if self.interval is None:
            return
        now = self.clock()
        if now - self._last >= self.interval:
            self._last = now
            notify("WATCHDOG=1")
