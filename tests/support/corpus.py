"""A corpus of bad (and awkward but good) image files, written by the tests, never committed.

`write_corpus(folder)` writes every case into a folder; each `Case` says whether the file must be
used (`expect` None) or skipped with a reason that contains `expect`.
"""

import dataclasses
import functools
import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np

BOMB_SIDE = 20000  # 400 megapixels: 1.2 GB of BGR pixels from a ~1.7 MB file
GOOD_SIZE = (48, 64)  # (height, width) of the plain good images


@dataclasses.dataclass(frozen=True)
class Case:
    """One corpus file: its name, what it is, and what every entry point must make of it.

    Attributes:
      name: the file name.
      what: the input, in words (the catalogue's first column).
      expect: None when the image must be used; else a part of the reason it is skipped with.
    """

    name: str
    what: str
    expect: str = None


def _pil_bytes(image, fmt, **kwargs):
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


def _noise(seed, size=GOOD_SIZE, mode="RGB"):
    from PIL import Image

    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).convert(mode)


def good_jpeg(seed=0):
    """A plain 64×48 noise JPEG."""
    return _pil_bytes(_noise(seed), "JPEG")


def _png_chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


@functools.lru_cache(maxsize=1)
def bomb_png(side=BOMB_SIDE):
    """A real, valid grayscale PNG of side×side zeros: tiny on disk, gigabytes once decoded."""
    squeeze = zlib.compressobj(1)
    rows = b"\0" * (1 + side) * 500  # each row: filter byte 0, then `side` zero samples
    body = b"".join([squeeze.compress(rows) for _ in range(side // 500)] + [squeeze.flush()])
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)  # 8-bit grayscale
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", body) + _png_chunk(b"IEND", b"")


def _bytes_cases():
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to view
    frames = [Image.new("P", (40, 30), i) for i in range(3)]
    jpeg = good_jpeg(7)
    return {
        Case("truncated.jpg", "truncated JPEG (first 300 bytes)", "not a decodable image"): jpeg[:300],
        Case("zero.png", "zero-byte file", "empty file"): b"",
        Case("notes.jpg", "text file named .jpg", "not an image"): b"shopping list: dog food\n" * 4,
        Case("png-named.jpg", "PNG named .jpg (wrong extension)"): _pil_bytes(_noise(1), "PNG"),
        Case("bomb.png", "decompression bomb: 1.7 MB PNG of 20000×20000", "megapixel limit"): bomb_png(),
        Case("pixel.png", "1×1 PNG", "too small to be a photo"): _pil_bytes(_noise(2, (1, 1)), "PNG"),
        Case("cmyk.jpg", "CMYK JPEG"): _pil_bytes(_noise(3, mode="CMYK"), "JPEG"),
        Case("sixteen.png", "16-bit grayscale PNG"): _pil_bytes(Image.fromarray(np.full(GOOD_SIZE, 40000, np.uint16)), "PNG"),
        Case("animated.gif", "animated GIF (3 frames)"): _pil_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:]),
        Case("rotated.jpg", "EXIF-rotated JPEG (orientation 6)"): _pil_bytes(_noise(4), "JPEG", exif=exif.tobytes()),
        Case("good-1.jpg", "plain JPEG"): good_jpeg(11),
        Case("good-2.jpg", "plain JPEG"): good_jpeg(12),
        Case("good-3.jpg", "plain JPEG"): good_jpeg(13),
        Case("good-4.jpg", "plain JPEG"): good_jpeg(14),
    }


LOOP = Case("loop.jpg", "symlink loop (a link to itself)", "cannot read")
DANGLING = Case("dangling.jpg", "dangling symlink", "cannot read")
FIFO = Case("fifo.jpg", "named pipe (FIFO)", "not a regular file")
UNREADABLE = Case("unreadable.jpg", "file without read permission (chmod 000)", "cannot read")


def can_hide_files():
    """Whether chmod 000 stops this process reading (not as root, which reads anyway)."""
    return hasattr(os, "geteuid") and os.geteuid() != 0


def write_corpus(folder):
    """Writes every case into `folder` (created); returns the list of Cases written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cases = []
    for case, data in _bytes_cases().items():
        (folder / case.name).write_bytes(data)
        cases.append(case)
    os.symlink(LOOP.name, folder / LOOP.name)
    os.symlink("no-such-photo.jpg", folder / DANGLING.name)
    cases += [LOOP, DANGLING]
    if hasattr(os, "mkfifo"):
        os.mkfifo(folder / FIFO.name)
        cases.append(FIFO)
    if can_hide_files():
        (folder / UNREADABLE.name).write_bytes(good_jpeg(5))
        os.chmod(folder / UNREADABLE.name, 0)
        cases.append(UNREADABLE)
    return cases


def write_good(folder, n, seed=100, prefix="good"):
    """Writes `n` plain noise JPEGs into `folder` (created); returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"{prefix}-{seed + i}.jpg").write_bytes(good_jpeg(seed + i))
    return folder
