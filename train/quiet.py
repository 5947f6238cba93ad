"""Keeping TensorFlow's and LiteRT's native log lines (written straight to file descriptor 2) off the screen.

Importing TensorFlow, converting a model and creating the first interpreter each print lines from
C++ that users cannot act on (oneDNN notices, CUDA probes, converter statistics); the failures that
matter reach Python as exceptions, which carry the message.
"""

import contextlib
import logging
import os
import sys
import tempfile

log = logging.getLogger(__name__)

TAIL_LINES = 40  # how much of a captured log to keep for --verbose after a failure


@contextlib.contextmanager
def quiet_native_stderr():
    """Routes whatever is written on file descriptor 2 into a temporary file for the duration.

    Yields:
      (stream, tail): a text stream on the real stderr (for progress bars), and a function
      returning the last TAIL_LINES lines captured (for debug logs after a failure).
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (embedded interpreters): leave stderr alone
        yield sys.stderr, lambda: ""
        return
    with tempfile.TemporaryFile() as sink:

        def tail():
            sink.seek(0)
            lines = sink.read().decode("utf-8", "replace").splitlines()
            return "\n".join(lines[-TAIL_LINES:])

        real = os.fdopen(os.dup(saved), "w", buffering=1)
        os.dup2(sink.fileno(), 2)
        try:
            yield real, tail
        finally:
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            real.close()


def import_tensorflow():
    """Imports TensorFlow and Keras without their start-up notices; returns (tf, keras)."""
    if "tensorflow" in sys.modules and "keras" in sys.modules:
        return sys.modules["tensorflow"], sys.modules["keras"]
    with quiet_native_stderr() as (_, tail):
        try:
            import keras
            import tensorflow as tf

            # The first GPU probe prints a cuInit error on every GPU-less machine.
            tf.config.list_physical_devices("GPU")
        except ImportError:
            log.debug("import log:\n%s", tail())
            raise
    return tf, keras
