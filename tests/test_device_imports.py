"""Importing tl.device touches no hardware and no heavy framework: no TensorFlow, gpiozero or picamera2."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_importing_every_device_module_pulls_in_no_tensorflow_and_no_hardware():
    mods = sorted(f"tl.device.{p.stem}" for p in (REPO / "device").glob("*.py") if p.stem != "__init__")
    assert {"tl.device.cli", "tl.device.daemon", "tl.device.door", "tl.device.cameras"} <= set(mods)
    code = (
        "import importlib, sys\n"
        f"for m in {mods!r}: importlib.import_module(m)\n"
        "bad = sorted(m for m in sys.modules\n"
        "             if m.split('.')[0] in ('tensorflow', 'keras', 'tf_keras', 'gpiozero', 'picamera2', 'libcamera'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"importing tl.device pulled in: {out.stdout.strip()}"


def test_console_script_help_runs():
    out = subprocess.run([sys.executable, "-m", "tl.device.cli", "--help"], capture_output=True, text=True, check=True)
    for command in ("classify", "run", "check-config"):
        assert command in out.stdout
