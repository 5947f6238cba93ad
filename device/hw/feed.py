"""The model's input, made as early and as small as a source can: camera streams at the model's size, reduced JPEG decodes.

A `ModelFeed` knows the model's InputSpec and the ROI (in capture pixels). Sources ask it for the
size a camera's second stream should have, and turn that stream, or a JPEG decoded at 1/2, 1/4 or
1/8 size, into the model's RGB input without ever making the full-size frame. The resize rule is
`tl.device.model.contract.reduction`'s.
"""

import struct

import cv2
import numpy as np

from tl.device.model import contract

_REDUCED_FLAGS = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}
# JPEG start-of-frame markers (they carry the image size); C4, C8 and CC are other segments.
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def jpeg_size(data):
    """(width, height) from a JPEG's header, or None when `data` is not a JPEG (or is cut short)."""
    if len(data) < 4 or data[0] != 0xFF or data[1] != 0xD8:
        return None
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        length = struct.unpack(">H", bytes(data[i + 2 : i + 4]))[0]
        if marker in _SOF:
            height, width = struct.unpack(">HH", bytes(data[i + 5 : i + 9]))
            return (width, height) if width and height else None
        i += 2 + length
    return None


class ModelFeed:
    """What the model needs from a frame: its InputSpec and the ROI, and the cheap ways to make it.

    Args:
      spec: the model's InputSpec.
      roi: (x, y, w, h) region of interest in capture pixels, or None.
    """

    def __init__(self, spec, roi=None):
        self.spec = spec
        self.roi = tuple(int(v) for v in roi) if roi is not None else None

    def __str__(self):
        return f"model input {self.spec.width}x{self.spec.height}" + (f", roi {self.roi}" if self.roi else "")

    def region(self, width, height):
        """The model's (x, y, w, h) in a width×height frame, or None when the ROI does not fit in it."""
        if self.roi is not None:
            x, y, w, h = self.roi
            if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > width or y + h > height:
                return None  # the full-frame path reports it, naming the fix
        return contract.model_region(width, height, self.spec, self.roi)

    def stream_size(self, width, height):
        """The (w, h) of a second camera stream, covering the whole width×height view, in which the
        model's region comes out at the model's size (even numbers, never larger than the frame)."""
        region = self.region(width, height) or (0, 0, width, height)
        w = round(width * self.spec.width / region[2])
        h = round(height * self.spec.height / region[3])
        return min(width, max(2, w + w % 2)), min(height, max(2, h + h % 2))

    def from_stream(self, image, width, height):
        """The model's input from a stream image covering the whole width×height view (colour order kept)."""
        region = self.region(width, height) or (0, 0, width, height)
        factor_x, factor_y = width / image.shape[1], height / image.shape[0]
        x, y = round(region[0] / factor_x), round(region[1] / factor_y)
        w = min(image.shape[1] - x, max(1, round(region[2] / factor_x)))
        h = min(image.shape[0] - y, max(1, round(region[3] / factor_y)))
        return contract.fit_region(image, (x, y, w, h), self.spec)

    def jpeg_factor(self, data):
        """How much a JPEG may be shrunk at decode (2, 4 or 8), or None: not a JPEG, ROI outside it, or no gain."""
        size = jpeg_size(data)
        region = self.region(*size) if size else None
        factor = contract.reduction(region, self.spec) if region else 1
        return factor if factor > 1 else None

    def from_jpeg(self, data, factor):
        """The model's RGB input from JPEG bytes decoded at 1/`factor` size; None if that fails.

        Args:
          data: the JPEG bytes (uint8 array or bytes).
          factor: from `jpeg_factor`.
        """
        small = decode_reduced(data, factor)
        return None if small is None else self.from_reduced(small, factor)

    def from_reduced(self, small, factor):
        """The model's RGB input from a BGR frame shrunk by `factor` (`decode_reduced`)."""
        height, width = small.shape[:2]
        region = contract.scale_region(self.region(width * factor, height * factor), factor, width, height)
        return cv2.cvtColor(contract.fit_region(small, region, self.spec), cv2.COLOR_BGR2RGB)


def decode_reduced(data, factor):
    """Decodes JPEG bytes at 1/`factor` size (BGR); None when it fails or does not come out at that size."""
    width, height = jpeg_size(data)
    buf = np.frombuffer(data, np.uint8) if isinstance(data, bytes | bytearray) else data
    small = cv2.imdecode(buf, _REDUCED_FLAGS[factor])
    # A rotated (EXIF) or odd file does not come out at the size its header promised: full path.
    if small is None or small.shape[:2] != (-(-height // factor), -(-width // factor)):
        return None
    return small
