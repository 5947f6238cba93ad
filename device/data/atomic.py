"""Atomic file writes: a temp file in the same folder, then os.replace, so nothing is half-written."""

import contextlib
import json
import os
import tempfile
from pathlib import Path

from tl.device.errors import OutputError

# Modes before the umask. Artifacts (models, reports) are for sharing: what a plain open() gives.
# What a door records (events, snapshots of the porch) is not: owner and group only.
SHARED_FILE = 0o666
PRIVATE_FILE = 0o640
PRIVATE_DIR = 0o750


@contextlib.contextmanager
def atomic_path(path, suffix=None, mode=SHARED_FILE):
    """Yields a temporary path beside `path`; on success it is renamed onto `path`.

    Args:
      path: the final file name.
      suffix: suffix of the temporary file (some writers, like Keras, insist on one);
        defaults to the final file's own suffix.
      mode: the file's mode before the umask: SHARED_FILE (what a plain open() gives) or PRIVATE_FILE.

    On any exception (Ctrl-C included) the temporary file is removed and `path` is untouched.
    """
    path = Path(path)
    suffix = path.suffix if suffix is None else suffix
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{suffix}", dir=path.parent)
    except OSError as e:
        raise OutputError(f"cannot write in {path.parent}: {e.strerror}; choose a writable folder") from e
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp creates 0600; give the file the mode asked for (umask applies), so a model copied
        # to the Pi or served by a web page stays readable by other users, and a snapshot does not.
        os.chmod(tmp, mode & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_bytes(path, data, mode=SHARED_FILE):
    """Writes `data` to `path` atomically, with `mode` (before the umask; see `atomic_path`)."""
    with atomic_path(path, mode=mode) as tmp:
        tmp.write_bytes(data)


def write_text(path, text):
    """Writes `text` (UTF-8) to `path` atomically."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path, obj):
    """Writes `obj` as indented JSON to `path` atomically."""
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=_jsonable) + "\n")


def check_writable(folder, mode=0o777, option="--out"):
    """Creates `folder` if needed and proves a file can be written there.

    Args:
      folder: the folder.
      mode: the mode of a folder created here, before the umask (PRIVATE_DIR for a door's records);
        an existing folder keeps its own.
      option: the option that chose it, named in the message.

    Raises:
      OutputError: naming the folder, when it cannot be created or written.
    """
    folder = Path(folder)
    try:
        folder.mkdir(mode=mode, parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise OutputError(
            f"output folder {folder} is not writable ({e.strerror}); choose another with {option}"
        ) from e
    return folder


def check_creatable(folder, option="--out"):
    """Proves `folder` could be created and written, without creating anything.

    For refusing an output folder before a long run, while leaving no empty folder behind
    when the run is refused for another reason (`check_writable` creates it when it is time).

    Raises:
      OutputError: naming the folder, when it is a file or its nearest existing parent is not writable.
    """
    folder = Path(folder).absolute()
    if folder.is_dir():
        return check_writable(folder, option=option)
    parent = folder
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent != folder and parent.is_dir() and os.access(parent, os.W_OK | os.X_OK):
        return folder
    why = "it is a file" if parent == folder else f"cannot be created in {parent}"
    raise OutputError(f"output folder {folder} is not writable ({why}); choose another with {option}")


def _umask():
    # Linux tells the umask in /proc without changing it; os.umask() can only read it by setting it,
    # which for a moment gives files other threads create (the status page, MQTT) mode 0666.
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def _jsonable(obj):
    # numpy scalars and arrays, Paths: what our reports carry.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
