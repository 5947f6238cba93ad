"""tl.device's import hygiene: no TensorFlow or hardware on import, and imports only go downwards between rooms."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEVICE = REPO / "device"

# Each room of tl.device and the rooms it may import (DESIGN.md: errors <- model, data <- recognition
# <- hw, door <- observe <- cli; bench uses model and data only). `errors` and the package root
# (`__version__`) may be imported from anywhere.
ALLOWED = {
    "model": set(),
    "data": set(),
    "recognition": {"model", "data"},
    "hw": {"model", "data", "recognition"},
    "door": {"model", "data", "recognition", "hw"},
    "observe": {"model", "data", "recognition", "hw", "door"},
    "bench": {"model", "data"},
    "cli": {"model", "data", "recognition", "hw", "door", "observe", "bench"},
    # The workstation side uses the runtime contract only.
    # Open-set statistics are written by tl-train in the format tl.device.recognition reads.
    # `cli.common` (and nothing else of `cli`): the four command lines share one convention (-h, exit
    # codes, logging, error prefix), and that module imports only click and tl.device.errors (tested below).
    "tl.train": {"model", "data", "recognition", "cli.common"},
    "tl.convert": {"model", "data", "recognition", "cli.common"},
}
ROOMS = sorted(p.name for p in DEVICE.iterdir() if (p / "__init__.py").exists())


def _device_modules():
    return sorted("tl.device." + ".".join(p.relative_to(DEVICE).with_suffix("").parts).removesuffix(".__init__")
                  for p in DEVICE.rglob("*.py") if "__pycache__" not in p.parts)


def _imported_rooms(path):
    """The tl.device rooms a file imports, anywhere in it (function-level imports included)."""
    rooms = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[:4] == ["tl", "device", "cli", "common"]:
                rooms.add("cli.common")
            elif parts[:2] == ["tl", "device"] and len(parts) > 2 and parts[2] in ROOMS:
                rooms.add(parts[2])
    return rooms


def _wrong_way(owner, path):
    allowed = ALLOWED[owner] | {owner if not owner.startswith("tl.") else ""}
    return sorted(r for r in _imported_rooms(path) if r not in allowed and not (r == "cli.common" and "cli" in allowed))


def test_the_shared_cli_convention_imports_only_click_and_errors():
    tree = ast.parse((DEVICE / "cli" / "common.py").read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    third_party = {m for m in imported if m.split(".")[0] not in sys.stdlib_module_names}
    assert third_party == {"click", "tl.device.errors"}


def test_every_room_has_a_docstring_saying_what_lives_there():
    assert set(ROOMS) == set(ALLOWED) - {"tl.train", "tl.convert"}
    for room in ROOMS:
        doc = ast.get_docstring(ast.parse((DEVICE / room / "__init__.py").read_text()))
        assert doc and "Lives here" in doc and "import" in doc, room


def test_imports_only_go_downwards():
    bad = []
    for room in ROOMS:
        for path in (DEVICE / room).rglob("*.py"):
            bad += [f"{path.relative_to(REPO)} imports tl.device.{r}" for r in _wrong_way(room, path)]
    for pkg, folder in (("tl.train", "train"), ("tl.convert", "convert")):
        for path in (REPO / folder).rglob("*.py"):
            bad += [f"{path.relative_to(REPO)} imports tl.device.{r}" for r in _wrong_way(pkg, path)]
    assert not bad, "imports that go the wrong way between rooms:\n" + "\n".join(bad)


def test_the_direction_check_catches_a_wrong_way_import(tmp_path):
    upward = tmp_path / "m.py"
    upward.write_text("def f():\n    from tl.device.door.policy import DoorPolicy\n")
    assert _wrong_way("model", upward) == ["door"]
    assert _wrong_way("cli", upward) == []
    assert _wrong_way("tl.train", upward) == ["door"]
    shared = tmp_path / "c.py"
    shared.write_text("from tl.device.cli.common import fail\nfrom tl.device.cli.tl_device import main\n")
    assert _wrong_way("tl.train", shared) == ["cli"]  # the convention, yes; the rest of cli, no
    assert _wrong_way("bench", shared) == ["cli", "cli.common"]


def test_importing_every_device_module_pulls_in_no_tensorflow_and_no_hardware():
    mods = _device_modules()
    assert {"tl.device.cli.tl_device", "tl.device.door.loop", "tl.device.hw.doors", "tl.device.hw.cameras"} <= set(mods)
    code = (
        "import importlib, sys\n"
        f"for m in {mods!r}: importlib.import_module(m)\n"
        "bad = sorted(m for m in sys.modules\n"
        "             if m.split('.')[0] in ('tensorflow', 'keras', 'tf_keras', 'gpiozero', 'picamera2', 'libcamera'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"importing tl.device pulled in: {out.stdout.strip()}"


@pytest.mark.parametrize("module", ["tl.device.cli.tl_device", "tl.device.cli.tl_bench"])
def test_console_script_help_runs(module):
    for flag in ("--help", "-h"):
        out = subprocess.run([sys.executable, "-m", module, flag], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        assert "Usage" in out.stdout
