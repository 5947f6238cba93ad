"""A short soak (2,000 frames) of the real daemon: no memory or file-descriptor growth, every event written.

The 20,000-frame soak is `benchmarks/soak.py` (results in benchmarks/soak.md); this runs the same
script on the tiny test model so that it cannot rot.
"""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("gpiozero")

from tests.support.scenes import make_scene

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_two_thousand_frames_soak_without_growth_and_with_every_event(tiny_models, tmp_path):
    rng = np.random.default_rng(0)
    pool = tmp_path / "pool"
    for kind, scene, count in (("empty", "background", 10), ("allow", "dog", 6), ("deny", "raccoon", 4)):
        (pool / kind).mkdir(parents=True)
        for i in range(count):
            cv2.imwrite(str(pool / kind / f"{i:02d}.jpg"), make_scene(scene, rng))
    out = tmp_path / "soak.json"
    cmd = [sys.executable, str(REPO / "benchmarks" / "soak.py"), "--frames", "2000", "--motion", "--model",
           str(tiny_models["tiny_int8"]), "--pool", str(pool), "--allow", "dog", "--deny", "raccoon",
           "--threshold", "0.7", "--json", str(out), "--markdown", str(tmp_path / "soak.md")]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.exists(), run.stdout + run.stderr
    (result,) = json.loads(out.read_text())
    assert result["events"] == {"lines": 32, "expected": 32, "complete": True}  # 10 visits: open, close, denied
    assert result["stop"]["frames"] == 2000 and result["stop"]["unreadable"] == 0
    assert result["stop"]["classified"] + result["stop"]["skipped_motion"] == 2000
    assert result["rss_growth_mb"] <= 10 and result["fd_growth"] <= 0
    assert result["samples"] >= 3
    if result["mqtt_events_received"] is not None:  # mosquitto installed: the broker got them all too
        assert result["mqtt_events_received"] == 32
    assert result["passed"] and run.returncode == 0, run.stdout + run.stderr
    assert "| 2000 | tiny_int8.tflite | on |" in (tmp_path / "soak.md").read_text()
