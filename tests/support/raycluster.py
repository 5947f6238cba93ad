"""A real Ray cluster of N nodes on 127.0.0.1, for tests and benchmarks, that leaves no process behind.

Each node is `ray start --block` in a session of its own, with its own temp dir, one CPU and a small
object store; the cluster uses token authentication with a token of its own. Stopping sends SIGTERM,
then SIGKILL, to every process of exactly those sessions — Ray's workers make process groups of their
own, so a process-group kill would leave them behind, and `ray stop` would stop every Ray of the user
on the machine (another job's included). Linux only: the sessions are read from /proc.
"""

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

START_TIMEOUT_S = 180
OBJECT_STORE_MB = 200  # small: a test cluster shares a 2-core CI box


class ClusterStartError(RuntimeError):
    """A node did not come up; the message carries the end of its log."""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def session_pids(sid):
    """Live (non-zombie) processes of session `sid`."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[3]) == sid:  # after "(comm)": state, ppid, pgrp, session
            pids.append(int(stat.parent.name))
    return pids


def stop_node(proc):
    """Stops one node and every process it started: SIGTERM to its whole session, then SIGKILL what is left."""
    for sig, wait_s in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        for pid in session_pids(proc.pid) or [proc.pid]:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            proc.poll()  # reaps the node's own process
            if not session_pids(proc.pid):
                return
            time.sleep(0.5)


class LocalCluster:
    """Context manager: `nodes` Ray nodes on 127.0.0.1 with one CPU each; `address` and `env` to reach them.

    Args:
      nodes: how many nodes (the first is the head).
      logs: folder for each node's output (default: inside the cluster's temp dir, removed on exit).
    """

    def __init__(self, nodes=2, logs=None):
        self.count = nodes
        # Short: Ray's socket paths under the temp dir have a length limit.
        self.base = Path(tempfile.gettempdir()) / f"tlray{secrets.token_hex(3)}"
        self.logs = Path(logs) if logs else self.base / "logs"
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
                    "TF_CPP_MIN_LOG_LEVEL": "2", "RAY_ADDRESS": ""}
        self.procs = []

    def __enter__(self):
        self.logs.mkdir(parents=True, exist_ok=True)
        try:
            head = ["--head", "--port", str(self.port), "--include-dashboard", "false"]
            self._start("head", [*head, "--temp-dir", str(self.base / "h")])
            for i in range(1, self.count):
                self._start(f"node{i}", ["--address", self.address, "--temp-dir", str(self.base / f"w{i}")])
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        """Stops every node (the head last); safe to call twice."""
        while self.procs:
            stop_node(self.procs.pop())
        shutil.rmtree(self.base, ignore_errors=True)

    def _start(self, name, args):
        ray = str(Path(sys.executable).with_name("ray"))
        log = self.logs / f"{name}.log"
        proc = subprocess.Popen(
            [ray, "start", "--block", "--disable-usage-stats", "--num-cpus", "1", "--node-ip-address", "127.0.0.1",
             "--object-store-memory", str(OBJECT_STORE_MB * 2**20), *args],
            stdout=log.open("w"), stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        self.procs.append(proc)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if "Ray runtime started" in log.read_text(errors="replace"):
                return
            if proc.poll() is not None:
                break
            time.sleep(1)
        raise ClusterStartError(f"ray start ({name}) did not come up in {START_TIMEOUT_S} s:\n"
                                f"{log.read_text(errors='replace')[-3000:]}")
