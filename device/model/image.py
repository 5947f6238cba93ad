"""Decoding image files into RGB uint8 arrays, the one way both training and the device do it."""

from pathlib import Path

import cv2
import numpy as np

from tl.device.errors import ImageError

# OpenCV's IMREAD_COLOR already does what a photo folder needs: it honours the EXIF
# orientation, turns grayscale/palette/CMYK into 3 channels, drops alpha, and scales
# 16-bit samples down to 8 bits. We only have to turn BGR into RGB.
_IMREAD_FLAGS = cv2.IMREAD_COLOR


def decode_image(data, name="image"):
    """Decodes encoded image bytes (JPEG, PNG, BMP, WebP, TIFF, GIF...) into RGB uint8.

    Args:
      data: the file's bytes.
      name: what to call the image in error messages (usually its path).

    Returns:
      An (H, W, 3) uint8 array in RGB order.

    Raises:
      ImageError: when the bytes are empty or are not a complete image.
    """
    if len(data) == 0:
        raise ImageError(name, "empty file (0 bytes)")
    buf = np.frombuffer(data, dtype=np.uint8)
    bgr = cv2.imdecode(buf, _IMREAD_FLAGS)
    if bgr is None or bgr.size == 0:
        raise ImageError(name, "not a decodable image (truncated, corrupt, or not an image format)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_image(path):
    """Reads a file and decodes it.

    Returns:
      (data, rgb): the file's bytes (for hashing) and its RGB uint8 pixels.

    Raises:
      ImageError: when the file cannot be read or decoded.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ImageError(str(path), f"cannot read ({e.strerror})") from e
    return data, decode_image(data, str(path))


def load_image(path):
    """Returns the RGB uint8 pixels of an image file (see `decode_image`)."""
    return read_image(path)[1]

