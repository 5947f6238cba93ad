"""The package layout: `pip install .` works as well as -e (tl.device's import hygiene: test_device_imports)."""

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_maps_folders_into_the_tl_namespace(tmp_path):
    # Built as a user builds it: in pip's isolated build environment (the SPDX license string needs
    # setuptools >= 77, newer than the one a fresh venv has), verbosely, to see every warning.
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", "-w", tmp_path, REPO],
                           capture_output=True, text=True)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    warnings = [line for line in (built.stdout + built.stderr).splitlines()
                if re.search(r"warn|deprecat", line, re.IGNORECASE) and "byte-compiling is disabled" not in line
                and "Location 'file:" not in line]  # pip's note about a configured local index folder
    assert warnings == [], "\n".join(warnings)
    (wheel,) = tmp_path.glob("tl_edge-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for must in ("tl/device/model/contract.py", "tl/device/cli/tl_device.py", "tl/train/cli.py", "tl/convert/__init__.py", "tl/device/deploy/door.toml"):
        assert must in names
    assert not [n for n in names if n.split("/")[0] in ("train", "device", "convert", "tests", "benchmarks")]
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "tl-train = tl.train.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()

    # A plain (non-editable) install into a fresh venv imports from site-packages.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    py = venv / "bin" / "python"
    subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel], check=True, capture_output=True)
    out = subprocess.run([py, "-c", "import tl.device.errors, tl.train, tl.convert; print(tl.device.errors.__file__)"],
                         capture_output=True, text=True, check=True, cwd=tmp_path)
    assert "site-packages/tl/device/errors.py" in out.stdout
    assert (venv / "bin" / "tl-train").exists()
