"""Image sizes read from headers, the pixel limits, and the other small guards against bad input."""

import io
import logging
import os
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from tests.support.corpus import bomb_png, good_jpeg
from tl.device.data import atomic
from tl.device.errors import ConfigError, ImageError, ModelError, OutputError
from tl.device.model import image
from tl.device.model.image_header import image_size

FORMATS = [
    ("PNG", "RGB", {}), ("PNG", "I;16", {}), ("PNG", "P", {}), ("JPEG", "RGB", {}), ("JPEG", "CMYK", {}),
    ("JPEG", "L", {"progressive": True}), ("GIF", "P", {}), ("BMP", "RGB", {}), ("WEBP", "RGB", {}),
    ("WEBP", "RGB", {"lossless": True}), ("WEBP", "RGBA", {}), ("TIFF", "RGB", {}), ("TIFF", "RGB", {"compression": "tiff_lzw"}),
]


def _encode(fmt, mode, size=(37, 23), **kwargs):
    buf = io.BytesIO()
    Image.new(mode, size).save(buf, fmt, **kwargs)
    return buf.getvalue()


@pytest.mark.parametrize("fmt,mode,kwargs", FORMATS, ids=[f"{f}-{m}-{'-'.join(k) or 'plain'}" for f, m, k in FORMATS])
def test_header_size_matches_what_pillow_wrote(fmt, mode, kwargs):
    assert image_size(_encode(fmt, mode, **kwargs)) == (37, 23)


def test_header_size_of_big_endian_tiff_os2_bmp_and_a_gif_frame_beyond_its_screen():
    entries = [(256, 3, 1, struct.pack(">HH", 300, 0)), (257, 4, 1, struct.pack(">I", 200))]
    tiff = b"MM\x00*" + struct.pack(">IH", 8, len(entries))
    tiff += b"".join(struct.pack(">HHI", tag, kind, n) + value for tag, kind, n, value in entries)
    assert image_size(tiff + b"\0" * 4) == (300, 200)
    os2_bmp = b"BM" + b"\0" * 12 + struct.pack("<IHH", 12, 640, 480)
    assert image_size(os2_bmp) == (640, 480)
    gif = b"GIF89a" + struct.pack("<HHBBB", 10, 10, 0, 0, 0) + b"\x2c" + struct.pack("<HHHH", 5, 5, 30000, 30000)
    assert image_size(gif) == (30005, 30005)  # the frame decoded is larger than the screen it claims


@pytest.mark.parametrize("data", [b"", b"hello", b"\x89PNG\r\n\x1a\n", good_jpeg()[:20], b"BM", b"II*\x00\xff\xff\xff\xff",
                                  b"P6 12"])
def test_cut_or_unknown_headers_give_no_size_and_no_error(data):
    assert image_size(data) is None


def test_a_bomb_is_refused_from_its_header_in_bounded_memory():
    # VmHWM is this process's own peak: ru_maxrss would carry pytest's peak over the fork and exec.
    code = ("from tests.support.corpus import bomb_png; from tl.device.model.image import decode_image\n"
            "try:\n    decode_image(bomb_png(), 'bomb.png')\nexcept Exception as e:\n    print(type(e).__name__, e)\n"
            "print(next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout.split("\n")
    assert out[0].startswith("ImageError bomb.png: 20000×20000 pixels (400 megapixels) is over the 50-megapixel limit")
    assert int(out[1]) < 250_000  # KB: the decode would have needed 1.2 GB of pixels


def test_the_limits_are_configurable_and_a_bad_setting_is_named(monkeypatch):
    data = good_jpeg()  # 64×48
    assert image.decode_image(data).shape == (48, 64, 3)
    with pytest.raises(ImageError, match="over the 0.003-megapixel limit"):
        image.decode_image(data, limit=3000)
    monkeypatch.setenv("TL_MAX_PIXELS", "2e3")
    with pytest.raises(ImageError, match="raise TL_MAX_PIXELS"):
        image.decode_image(data)
    monkeypatch.setenv("TL_MAX_PIXELS", "lots")
    with pytest.raises(ConfigError, match="TL_MAX_PIXELS='lots' is not a pixel count"):
        image.decode_image(data)


def test_images_too_small_to_be_photos_are_refused():
    ppm = b"P6\n# a comment\n15 40\n255\n" + bytes(15 * 40 * 3)
    with pytest.raises(ImageError, match=r"15×40 pixels is too small to be a photo"):
        image.decode_image(ppm)
    assert image.decode_image(b"P6 16 16 255\n" + bytes(16 * 16 * 3)).shape == (16, 16, 3)


def test_formats_without_a_readable_size_are_never_decoded():
    # Sun raster is RLE-compressed and OpenCV decodes it; its size is not read here, so it is refused.
    sun_raster = struct.pack(">8I", 0x59A66A95, 20000, 20000, 8, 0, 2, 0, 0)
    with pytest.raises(ImageError, match="not in a format tl-edge reads"):
        image.decode_image(sun_raster)
    with pytest.raises(ImageError, match=r"not a decodable image \(PNG header truncated or corrupt\)"):
        image.decode_image(b"\x89PNG\r\n\x1a\n\0\0")


def test_special_files_and_files_larger_than_any_allowed_image_are_not_read(tmp_path):
    os.mkfifo(tmp_path / "pipe.jpg")
    with pytest.raises(ImageError, match="not a regular file"):
        image.read_bytes(tmp_path / "pipe.jpg")  # would block for ever if opened
    with open(tmp_path / "huge.jpg", "wb") as f:
        f.truncate(500_000_000)  # sparse: costs no disk
    with pytest.raises(ImageError, match="500 MB is larger than any image within the 50-megapixel limit"):
        image.read_bytes(tmp_path / "huge.jpg")


def test_check_creatable_makes_nothing_and_names_the_option(tmp_path):
    target = tmp_path / "a" / "b"
    assert atomic.check_creatable(target) == target and not (tmp_path / "a").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match=r"is not writable \(cannot be created in .*file\); choose another with --out"):
        atomic.check_creatable(tmp_path / "file" / "run")
    with pytest.raises(OutputError, match="choose another with --events"):
        atomic.check_writable(tmp_path / "file" / "logs", option="--events")


def test_a_read_only_embedding_cache_is_read_and_not_written_with_one_warning(tmp_path, caplog):
    from tl.train.embeddings import EmbeddingCache

    (tmp_path / "file").write_text("x")
    cache = EmbeddingCache(tmp_path / "file" / "cache", "key")
    with caplog.at_level(logging.WARNING):
        assert cache.check_writable() is False
        cache.put("ab" * 32, "orig", np.zeros(4))
        cache.put_bad("cd" * 32, "broken")
    assert cache.get("ab" * 32, "orig") is None and cache.get_bad("cd" * 32) is None
    assert [r.getMessage() for r in caplog.records] == [
        f"embedding cache {tmp_path}/file/cache is not writable (Not a directory); embeddings are computed without "
        "being kept (--cache-dir DIR chooses another)"]


def test_a_truncated_keras_file_is_called_corrupt_not_missing(tmp_path):
    from tl.convert.reference import _load_keras

    (tmp_path / "model.keras").write_bytes(b"PK\x03\x04" + b"\0" * 100)  # the start of a ZIP, cut off
    with pytest.raises(ModelError, match="is corrupt or truncated"):
        _load_keras(tmp_path / "model.keras")


def test_long_class_lists_are_summarised():
    from tl.device.door.policy import make_policy_config

    labels = ["background"] + [f"class{i:04d}" for i in range(1000)]
    pc = make_policy_config(labels, allow=["class0000"])
    assert pc.names(pc.deny) == ", ".join(labels[2:12]) + ", … (999 classes)"
    assert pc.names(pc.allow) == "class0000"


def test_the_mock_door_says_it_is_a_mock():
    from tl.device.hw.doors import make_door

    assert str(make_door("mock", pin=17)) == "mock door on GPIO17"


def test_bomb_bytes_are_a_valid_png_that_really_decodes_large():
    data = bomb_png()
    assert len(data) < 2_000_000 and image_size(data) == (20000, 20000)
    # The IDAT stream is real zlib data, not a header in front of nothing: its first megabyte inflates.
    length = struct.unpack(">I", data[33:37])[0]
    assert data[37:41] == b"IDAT"
    assert zlib.decompressobj().decompress(data[41 : 41 + length], 1_000_000) == bytes(1_000_000)


def test_an_unwritable_events_folder_names_the_events_option(tmp_path):
    from tl.device.door.events import EventLog, Snapshots

    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="choose another with --events"):
        EventLog(tmp_path / "file" / "events.jsonl")
    with pytest.raises(OutputError, match="choose another with --snapshots"):
        Snapshots(tmp_path / "file" / "shots")


def test_the_open_set_line_of_a_big_model_is_summarised():
    from tl.device.recognition.openset import OpenSet

    labels = [f"c{i}" for i in range(1001)]
    fake = type("Stats", (), {"labels": labels})()
    line = OpenSet.describe(type("O", (), {"method": "embedding", "quantile": 0.98, "stats": fake,
                                           "limits": np.full(1001, 0.5)})())
    assert line.endswith("c9 0.500, … (1001 classes))") and len(line) < 300
