"""Errors of tl-edge: each is also a built-in, and each message names the thing and the fix.

Every error class of tl.device lives here (the CLIs turn any TLError into one line and exit code 2).
"""


class TLError(Exception):
    """Base class of every error tl-edge raises on purpose (CLIs turn these into exit code 2)."""


class DataError(TLError, ValueError):
    """A dataset folder or image cannot be used as it is."""


class ImageError(DataError):
    """One image file cannot be decoded.

    Attributes:
      name: the file (or what the caller called the image).
      reason: why, without the name (e.g. "empty file (0 bytes)").
    """

    def __init__(self, name, reason):
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason


class ModelError(TLError, ValueError):
    """A model file is missing, corrupt, or lacks what tl-edge needs (labels, input spec)."""


class ConfigError(TLError, ValueError):
    """An option or configuration value is invalid."""


class OutputError(TLError, OSError):
    """An output folder or file cannot be written."""


class CameraError(TLError, OSError):
    """A camera cannot be opened or stopped delivering frames (the daemon retries)."""


class DoorError(TLError, OSError):
    """The door's GPIO cannot be used (no pin factory, pin busy, wrong pin)."""
