"""An image's width and height read from its first bytes, without decoding it.

A PNG of 20000×20000 zeros compresses to about a megabyte but decodes into gigabytes; reading the
size from the header lets `tl.device.model.image` refuse it before any pixel is allocated. Covers
the formats tl-edge decodes (`FORMATS`); `tl.device.model.image` refuses every other format, so no
decoder ever sees an image whose size was not checked.
"""

import struct

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers carry the size: C0..CF except DHT (C4), JPG (C8) and DAC (CC).
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers that stand alone, without a length: TEM, RST0..7, SOI.
_STANDALONE = frozenset([0x01, *range(0xD0, 0xD9)])
_TIFF_WIDTH, _TIFF_HEIGHT = 256, 257


FORMATS = "JPEG, PNG, GIF, BMP, WebP, TIFF, PNM"
_SIGNATURES = (
    (b"\xff\xd8", "JPEG"), (PNG_SIGNATURE, "PNG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"), (b"BM", "BMP"),
    (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), *((f"P{k}".encode(), "PNM") for k in "123456fF"),
)


def image_format(data):
    """Names the format of encoded image bytes from their signature ("JPEG", ...), or None."""
    head = bytes(data[:16])
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return next((name for magic, name in _SIGNATURES if head.startswith(magic)), None)


def image_size(data):
    """Returns (width, height) from the header of encoded image bytes.

    Args:
      data: the file's bytes (only the header is looked at).

    Returns:
      (width, height) in pixels, or None when the format is not one of FORMATS, or its header
      is cut short or does not state a size.
    """
    data = memoryview(data).cast("B")
    for parse in (_png, _jpeg, _gif, _bmp, _webp, _tiff, _pnm):
        try:
            size = parse(data)
        except (struct.error, IndexError, ValueError):
            return None  # a header cut short: the decoder will say the file is truncated
        if size is not None:
            w, h = size
            return (w, h) if w > 0 and h > 0 else None
    return None


def _png(d):
    if bytes(d[:8]) != PNG_SIGNATURE or bytes(d[12:16]) != b"IHDR":
        return None
    return struct.unpack(">II", d[16:24])


def _jpeg(d):
    if bytes(d[:2]) != b"\xff\xd8":
        return None
    i = 2
    while i < len(d):
        if d[i] != 0xFF:
            return None  # not at a marker: a damaged file
        while d[i] == 0xFF:  # fill bytes
            i += 1
        marker = d[i]
        i += 1
        if marker in _STANDALONE:
            continue
        if marker in (0xD9, 0xDA):
            return None  # end of image or start of scan before any frame header
        length = struct.unpack(">H", d[i : i + 2])[0]
        if marker in _SOF:
            h, w = struct.unpack(">HH", d[i + 3 : i + 7])
            return w, h
        i += length
    return None


def _gif(d):
    if bytes(d[:6]) not in (b"GIF87a", b"GIF89a"):
        return None
    w, h, packed = struct.unpack("<HHB", d[6:11])
    i = 13 + (3 << ((packed & 7) + 1) if packed & 0x80 else 0)
    # The first frame (the one decoded) may reach beyond the logical screen: count its extent too.
    while i < len(d):
        block = d[i]
        if block == 0x2C:
            left, top, fw, fh = struct.unpack("<HHHH", d[i + 1 : i + 9])
            return max(w, left + fw), max(h, top + fh)
        if block != 0x21:
            break  # trailer or damage: the screen size is all there is
        i += 2  # introducer and label, then sub-blocks until a zero length
        while d[i]:
            i += d[i] + 1
        i += 1
    return w, h


def _bmp(d):
    if bytes(d[:2]) != b"BM":
        return None
    header = struct.unpack("<I", d[14:18])[0]
    if header == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
        return struct.unpack("<HH", d[18:22])
    w, h = struct.unpack("<ii", d[18:26])
    return abs(w), abs(h)  # a negative height means top-down rows


def _webp(d):
    if bytes(d[:4]) != b"RIFF" or bytes(d[8:12]) != b"WEBP":
        return None
    chunk = bytes(d[12:16])
    if chunk == b"VP8 ":
        w, h = struct.unpack("<HH", d[26:30])
        return w & 0x3FFF, h & 0x3FFF
    if chunk == b"VP8L":
        bits = struct.unpack("<I", d[21:25])[0]
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        w = int.from_bytes(d[24:27], "little") + 1
        h = int.from_bytes(d[27:30], "little") + 1
        return w, h
    return None


def _tiff(d):
    order = {b"II*\x00": "<", b"MM\x00*": ">"}.get(bytes(d[:4]))
    if order is None:
        return None
    offset = struct.unpack(order + "I", d[4:8])[0]
    count = struct.unpack(order + "H", d[offset : offset + 2])[0]
    found = {}
    for k in range(count):
        entry = offset + 2 + 12 * k
        tag, kind = struct.unpack(order + "HH", d[entry : entry + 4])
        if tag in (_TIFF_WIDTH, _TIFF_HEIGHT):
            # SHORT (3) values sit in the first two bytes of the value field, LONG (4) fill it.
            fmt = "H" if kind == 3 else "I"
            found[tag] = struct.unpack(order + fmt, d[entry + 8 : entry + 8 + struct.calcsize(fmt)])[0]
    if len(found) < 2:
        return None
    return found[_TIFF_WIDTH], found[_TIFF_HEIGHT]


def _pnm(d):
    # "P6 640 480 255", tokens separated by whitespace, "#" comments to the end of a line.
    if bytes(d[:1]) != b"P" or bytes(d[1:2]) not in b"123456fF" or not bytes(d[1:2]):
        return None
    text = bytes(d[2:256]).decode("latin-1")
    tokens = " ".join(line.split("#")[0] for line in text.splitlines()).split()
    return int(tokens[0]), int(tokens[1])
