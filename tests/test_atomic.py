"""Atomic writes: a failed or interrupted write leaves the old file (or nothing) and no temp files."""

import pytest

from tl.device.data import atomic
from tl.device.errors import OutputError


def test_success_replaces_the_file(tmp_path):
    target = tmp_path / "labels.txt"
    target.write_text("old\n")
    atomic.write_text(target, "new\n")
    assert target.read_text() == "new\n"
    assert [p.name for p in tmp_path.iterdir()] == ["labels.txt"]


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_failure_keeps_the_old_file_and_cleans_up(tmp_path, exc):
    target = tmp_path / "model.keras"
    target.write_bytes(b"good model")
    with pytest.raises(exc):
        with atomic.atomic_path(target) as tmp:
            tmp.write_bytes(b"half a mod")
            assert tmp.suffix == ".keras" and tmp.parent == tmp_path  # same folder: os.replace is atomic
            raise exc
    assert target.read_bytes() == b"good model"
    assert [p.name for p in tmp_path.iterdir()] == ["model.keras"]


def test_json_handles_numpy_and_paths(tmp_path):
    import json

    import numpy as np

    atomic.write_json(tmp_path / "a.json", {"x": np.float32(1.5), "m": np.eye(2, dtype=np.int64), "p": tmp_path})
    data = json.loads((tmp_path / "a.json").read_text())
    assert data == {"x": 1.5, "m": [[1, 0], [0, 1]], "p": str(tmp_path)}


def test_unwritable_folder_is_named(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="file/out is not writable"):
        atomic.check_writable(tmp_path / "file" / "out")
    with pytest.raises(OutputError, match="cannot write in"):
        atomic.write_text(tmp_path / "file" / "x.txt", "y")


def test_written_files_get_the_usual_mode_not_0600(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        atomic.write_text(tmp_path / "m.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "m.txt").stat().st_mode & 0o777 == 0o644


def test_private_writes_are_0640_and_a_stricter_umask_still_wins(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        atomic.write_bytes(tmp_path / "a.jpg", b"x", mode=atomic.PRIVATE_FILE)
        os.umask(0o077)
        atomic.write_bytes(tmp_path / "b.jpg", b"x", mode=atomic.PRIVATE_FILE)
        assert atomic._umask() == 0o077  # read without changing it
    finally:
        os.umask(old)
    assert (tmp_path / "a.jpg").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "b.jpg").stat().st_mode & 0o777 == 0o600
