"""Decoding image files into RGB uint8 arrays, the one way training, conversion, benchmarks and the device do it.

Every decode first reads the image's size from its header (`tl.device.model.image_header`) and
refuses images too large to decode safely (a 1 MB PNG can say 20000×20000 and cost gigabytes) or
too small to be photos, so bad input costs a skipped file, never the machine's memory. Formats
whose size cannot be read from the header are not decoded at all.
"""

import os
import stat
from pathlib import Path

import cv2
import numpy as np

from tl.device.errors import ConfigError, ImageError
from tl.device.model.image_header import FORMATS, image_format, image_size

DEFAULT_MAX_PIXELS = 50_000_000  # 50 megapixels: above any camera a door or a phone has
MAX_PIXELS_ENV = "TL_MAX_PIXELS"
MIN_SIDE = 16  # pixels on the short side: below this an image is an icon or a tracking pixel, not a photo
# No encoding needs more than 8 bytes per pixel (16-bit RGBA, uncompressed): a bigger file cannot
# hold an image within the pixel limit, so it is refused before it is read into memory.
MAX_BYTES_PER_PIXEL = 8
_HEADROOM_BYTES = 1 << 20  # metadata (EXIF, ICC profiles) on top of the pixels

# OpenCV's IMREAD_COLOR already does what a photo folder needs: it honours the EXIF orientation,
# turns grayscale/palette/CMYK into 3 channels, drops alpha, and scales 16-bit samples down to
# 8 bits. We only have to turn BGR into RGB.
_IMREAD_FLAGS = cv2.IMREAD_COLOR


def max_pixels():
    """The largest image (width × height) decoded: $TL_MAX_PIXELS, else DEFAULT_MAX_PIXELS.

    Raises:
      ConfigError: when TL_MAX_PIXELS is not a positive number.
    """
    text = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(float(text.replace("_", "")))
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"{MAX_PIXELS_ENV}={text!r} is not a pixel count; give a number like 50000000 or 5e7")
    return value


def check_size(width, height, name="image", limit=None):
    """Refuses an image of `width` × `height` pixels that is too large or too small.

    Args:
      width, height: the image's size in pixels.
      name: what to call the image in the message.
      limit: the most pixels allowed; None for `max_pixels()`.

    Raises:
      ImageError: naming the size and the limit it breaks.
    """
    limit = max_pixels() if limit is None else limit
    if width * height > limit:
        raise ImageError(
            name,
            f"{width}×{height} pixels ({width * height / 1e6:.0f} megapixels) is over the {limit / 1e6:g}-megapixel "
            f"limit (a decompression bomb, or a scan far larger than a photo); shrink it, or raise {MAX_PIXELS_ENV}",
        )
    if min(width, height) < MIN_SIDE:
        raise ImageError(name, f"{width}×{height} pixels is too small to be a photo (needs at least {MIN_SIDE} px a side)")


def check_header(data, name="image", limit=None):
    """Checks the format and the size an image's header states, without decoding it (see `check_size`).

    Only formats whose header states the size are decoded at all (`image_header.FORMATS`): an
    image of another format could not be sized before OpenCV allocates its pixels.

    Returns:
      (width, height).

    Raises:
      ImageError: empty data, another format, a header cut short, or a size out of bounds.
    """
    if len(data) == 0:
        raise ImageError(name, "empty file (0 bytes)")
    kind = image_format(data)
    if kind is None:
        raise ImageError(name, f"not an image, or not in a format tl-edge reads ({FORMATS})")
    size = image_size(data)
    if size is None:
        raise ImageError(name, f"not a decodable image ({kind} header truncated or corrupt)")
    check_size(*size, name=name, limit=limit)
    return size


def decode_image(data, name="image", limit=None, bgr=False):
    """Decodes encoded image bytes (JPEG, PNG, GIF, BMP, WebP, TIFF, PNM) into RGB uint8.

    Args:
      data: the file's bytes.
      name: what to call the image in error messages (usually its path).
      limit: the most pixels decoded; None for `max_pixels()` ($TL_MAX_PIXELS or 50 megapixels).
      bgr: return OpenCV's BGR order (as camera frames come) instead of RGB.

    Returns:
      An (H, W, 3) uint8 array in RGB order (BGR with `bgr=True`).

    Raises:
      ImageError: when the bytes are empty, are not a complete image, or state a size out of bounds.
    """
    check_header(data, name, limit)
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), _IMREAD_FLAGS)
    except cv2.error:  # some decoders raise instead of returning None
        image = None
    if image is None or image.size == 0:
        raise ImageError(name, "not a decodable image (truncated, corrupt, or not an image format)")
    return image if bgr else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_bytes(path, limit=None):
    """Reads an image file's bytes, refusing what cannot be an image within the pixel limit.

    Refuses special files (a FIFO would block for ever) and files bigger than any image within
    the limit could be, before reading them.

    Raises:
      ImageError: naming the file and why.
    """
    path = Path(path)
    limit = max_pixels() if limit is None else limit
    try:
        info = path.stat()  # before opening: opening a FIFO would wait for a writer
        if not stat.S_ISREG(info.st_mode):
            raise ImageError(str(path), "not a regular file")
        most = limit * MAX_BYTES_PER_PIXEL + _HEADROOM_BYTES
        if info.st_size > most:
            raise ImageError(str(path), f"{info.st_size / 1e6:.0f} MB is larger than any image within the "
                                        f"{limit / 1e6:g}-megapixel limit ({MAX_PIXELS_ENV})")
        return path.read_bytes()
    except OSError as e:
        raise ImageError(str(path), f"cannot read ({e.strerror or e})") from e


def read_image(path, limit=None, bgr=False):
    """Reads a file and decodes it (see `decode_image`).

    Returns:
      (data, pixels): the file's bytes (for hashing) and its RGB (or BGR) uint8 pixels.

    Raises:
      ImageError: when the file cannot be read or decoded, or its size is out of bounds.
    """
    data = read_bytes(path, limit)
    return data, decode_image(data, str(path), limit, bgr)


def load_image(path, limit=None, bgr=False):
    """Returns the RGB uint8 pixels of an image file (see `decode_image`)."""
    return read_image(path, limit, bgr)[1]
