"""tl-train --ray on a real two-node Ray cluster on this machine, against the single-machine path.

The cluster is tests.support.raycluster.LocalCluster: `ray start --head` and a second `ray start
--address=…` on 127.0.0.1, each in a session and temp dir of its own, stopped afterwards with every
process they started (and only those). Linux only (it reads /proc).
Skipped, with the reason, where Ray is not installed.
"""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import V2_WEIGHTS
from tests.support.raycluster import LocalCluster, free_port, session_pids

pytest.importorskip("ray", reason="Ray is not installed (pip install 'tl-edge[cluster]')")

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="the teardown reads /proc (Linux)")]

RUN_TIMEOUT_S = 600
ARGS = ["--image-size", "96", "--weights", str(V2_WEIGHTS), "--epochs", "5", "--seed", "0"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Two Ray nodes on 127.0.0.1 (one CPU each); every process of theirs is gone afterwards."""
    with LocalCluster(nodes=2, logs=tmp_path_factory.mktemp("raylogs")) as c:
        yield c
    assert not [pid for p in c.procs for pid in session_pids(p.pid)]


@pytest.fixture(scope="module")
def ray_env(cluster):
    return cluster.env


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


def test_ray_embeddings_and_head_match_the_single_machine_run(cluster, plain_run, colour_data, tmp_path, ray_env):
    train, val = colour_data
    plain_out, plain_cache = plain_run
    cache = tmp_path / "cache"
    shutil.copytree(plain_cache / "extractors", cache / "extractors")  # the cluster run must not convert again
    converted = {p.name: p.stat().st_mtime_ns for p in (cache / "extractors").iterdir()}
    tl_train([train, "--out", tmp_path / "run", "--val-dir", val, "--cache-dir", cache, "--ray", cluster.address, *ARGS],
             ray_env)

    rec = json.loads((tmp_path / "run" / "train.json").read_text())
    plain = json.loads((plain_out / "train.json").read_text())
    used = rec["cluster"]
    assert used["address"] == cluster.address and used["nodes"] == 2 and used["workers"] == 2
    n_images = sum(plain["data"]["train_counts"].values()) + sum(plain["data"]["val_counts"].values())
    assert sum(used["images_per_node"].values()) == n_images and len(used["images_per_node"]) == 2
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


def test_unreachable_cluster_exits_2_with_the_fix_before_tensorflow(colour_data, tmp_path):
    train, val = colour_data
    cmd = [sys.executable, "-c", "from tl.train.cli import main; main()", str(train), "--out", str(tmp_path / "run"),
           "--val-dir", str(val), "--ray", f"127.0.0.1:{free_port()}", "--weights", "none"]
    started = time.monotonic()
    result = subprocess.run(cmd, env={**os.environ, "RAY_ADDRESS": ""}, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert "cannot join the Ray cluster" in result.stderr and "ray start --head" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "run").exists()
    assert time.monotonic() - started < 60  # refused up front, not after Ray's minutes of retries
