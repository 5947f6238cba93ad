"""tl-train --ray on a real two-node Ray cluster on this machine, against the single-machine path.

The fixture starts `ray start --head --block` and a second `ray start --address=… --block` on
127.0.0.1, each in a session and temp dir of its own, with an auth token of its own, and afterwards
stops every process of exactly those two sessions (not `ray stop`, which stops every Ray of the user
on the machine, another test's or job's included). Linux only (it reads /proc).
Skipped, with the reason, where Ray is not installed.
"""

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import V2_WEIGHTS

pytest.importorskip("ray", reason="Ray is not installed (pip install 'tl-edge[cluster]')")

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="the teardown reads /proc (Linux)")]

RAY = str(Path(sys.executable).with_name("ray"))
START_TIMEOUT_S = 180
RUN_TIMEOUT_S = 600
OBJECT_STORE_MB = 200  # small: the test cluster shares a 2-core CI box
ARGS = ["--image-size", "96", "--weights", str(V2_WEIGHTS), "--epochs", "5", "--seed", "0"]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_node(args, log, env):
    """`ray start --block …` in its own process group; returns once it says the runtime started."""
    proc = subprocess.Popen([RAY, "start", "--block", "--disable-usage-stats", "--num-cpus", "1",
                             "--object-store-memory", str(OBJECT_STORE_MB * 2**20), *args],
                            stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if "Ray runtime started" in log.read_text(errors="replace"):
            return proc
        if proc.poll() is not None:
            break
        time.sleep(1)
    _stop(proc)
    pytest.fail(f"ray start did not come up in {START_TIMEOUT_S} s:\n{log.read_text(errors='replace')[-3000:]}")


def _session(sid):
    """Live processes of session `sid` (Ray's workers make process groups of their own, not sessions)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[3]) == sid:  # fields after "(comm)": state, ppid, pgrp, session
            pids.append(int(stat.parent.name))
    return pids


def _stop(proc):
    """Stops one node and every process it started: SIGTERM to its whole session, SIGKILL what is left."""
    for sig, wait_s in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        for pid in _session(proc.pid) or [proc.pid]:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            proc.poll()  # reaps the node's own process
            if not _session(proc.pid):
                return
            time.sleep(0.5)


@pytest.fixture(scope="module")
def ray_env():
    """The environment every process of the test cluster shares: token auth with a token of its own."""
    return {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
            "TF_CPP_MIN_LOG_LEVEL": "2", "RAY_ADDRESS": ""}


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory, ray_env):
    """A head and a worker node on 127.0.0.1 (separate temp dirs); yields the address."""
    base = Path(tempfile_root()) / f"tlray{secrets.token_hex(3)}"  # short: Ray's socket paths have a length limit
    port = _free_port()
    address = f"127.0.0.1:{port}"
    nodes = []
    try:
        nodes.append(_start_node(["--head", "--port", str(port), "--node-ip-address", "127.0.0.1",
                                  "--include-dashboard", "false", "--temp-dir", str(base / "h")],
                                 tmp_path_factory.mktemp("ray") / "head.log", ray_env))
        nodes.append(_start_node(["--address", address, "--node-ip-address", "127.0.0.1",
                                  "--temp-dir", str(base / "w")],
                                 tmp_path_factory.mktemp("ray") / "worker.log", ray_env))
        yield address
    finally:
        for proc in reversed(nodes):
            _stop(proc)
        shutil.rmtree(base, ignore_errors=True)


def tempfile_root():
    import tempfile

    return tempfile.gettempdir()


def tl_train(args, env):
    cmd = [sys.executable, "-c", "from tl.train.cli import main; main()", *map(str, args)]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def plain_run(colour_data, imagenet_weights, tmp_path_factory, ray_env):
    """The single-machine run the cluster run is compared with (it also converts the LiteRT extractor)."""
    train, val = colour_data
    base = tmp_path_factory.mktemp("plain")
    tl_train([train, "--out", base / "run", "--val-dir", val, "--cache-dir", base / "cache", *ARGS], ray_env)
    return base / "run", base / "cache"


def _embeddings(cache):
    return {p.relative_to(cache): np.load(p) for p in sorted((cache / "embeddings").rglob("*.npy"))}


def test_ray_embeddings_and_head_match_the_single_machine_run(two_nodes, plain_run, colour_data, tmp_path, ray_env):
    train, val = colour_data
    plain_out, plain_cache = plain_run
    cache = tmp_path / "cache"
    shutil.copytree(plain_cache / "extractors", cache / "extractors")  # the cluster run must not convert again
    converted = {p.name: p.stat().st_mtime_ns for p in (cache / "extractors").iterdir()}
    tl_train([train, "--out", tmp_path / "run", "--val-dir", val, "--cache-dir", cache, "--ray", two_nodes, *ARGS],
             ray_env)

    rec = json.loads((tmp_path / "run" / "train.json").read_text())
    plain = json.loads((plain_out / "train.json").read_text())
    cluster = rec["cluster"]
    assert cluster["address"] == two_nodes and cluster["nodes"] == 2 and cluster["workers"] >= 1
    n_images = sum(plain["data"]["train_counts"].values()) + sum(plain["data"]["val_counts"].values())
    assert sum(cluster["images_per_node"].values()) == n_images
    assert rec["embedding"]["name"] == "litert" and plain["cluster"] is None
    assert {p.name: p.stat().st_mtime_ns for p in (cache / "extractors").iterdir()} == converted

    ours, theirs = _embeddings(cache), _embeddings(plain_cache)
    assert ours.keys() == theirs.keys() and len(ours) == rec["data"]["cache"]["misses"]
    for key, vec in ours.items():
        np.testing.assert_allclose(vec, theirs[key], rtol=1e-5, atol=1e-6, err_msg=str(key))

    assert rec["metrics"]["val"] == plain["metrics"]["val"]
    assert rec["calibration"] == plain["calibration"]
    a, b = np.load(tmp_path / "run" / "openset.npz"), np.load(plain_out / "openset.npz")
    for key in a.files:
        if a[key].dtype.kind == "f":
            np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6, err_msg=key)
        else:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_unreachable_cluster_exits_2_with_the_fix_before_tensorflow(colour_data, tmp_path, ray_env):
    train, val = colour_data
    cmd = [sys.executable, "-c", "from tl.train.cli import main; main()", str(train), "--out", str(tmp_path / "run"),
           "--val-dir", str(val), "--ray", f"127.0.0.1:{_free_port()}", "--weights", "none"]
    started = time.monotonic()
    result = subprocess.run(cmd, env=ray_env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert "cannot join the Ray cluster" in result.stderr and "ray start --head" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "run").exists()
    assert time.monotonic() - started < 60  # refused up front, not after Ray's minutes of retries
