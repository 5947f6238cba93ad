"""The training data path on every kind of bad input, without TensorFlow (a fake extractor)."""

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from tl.device.data.dataset import scan_folder
from tl.device.errors import ConfigError, DataError
from tl.device.model.contract import InputSpec, prepare_frame, prepare_image
from tl.device.model.image import load_image
from tl.train.embeddings import EmbeddingCache, embed_samples, parse_views, view_image
from tl.train.split import stratified_split

SPEC = InputSpec(16, 16)


def mean_colour(batch):
    """A stand-in backbone: the mean RGB of each image (3-d embedding)."""
    return batch.reshape(len(batch), -1, 3).mean(axis=1)


def _pil_bytes(img, fmt, **kw):
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.fixture()
def messy(tmp_path):
    """A class folder holding one of every awkward file a real photo folder has."""
    root = tmp_path / "data"
    good = Image.new("RGB", (60, 40), (200, 30, 30))
    cat = root / "cat"
    (cat / "nested" / "deeper").mkdir(parents=True)
    (cat / ".hidden_dir").mkdir()
    files = {
        "plain.jpg": _pil_bytes(good, "JPEG"),
        "zero.jpg": b"",
        "truncated.jpg": _pil_bytes(good, "JPEG")[:300],
        "notes.txt": b"not an image at all",
        "png_named.jpg": _pil_bytes(good, "PNG"),
        "cmyk.jpg": _pil_bytes(good.convert("CMYK"), "JPEG"),
        "gray.png": _pil_bytes(good.convert("L"), "PNG"),
        "rgba.png": _pil_bytes(good.convert("RGBA"), "PNG"),
        "palette.png": _pil_bytes(good.convert("P"), "PNG"),
        "ünïcödé name with spaces.jpg": _pil_bytes(good, "JPEG"),
        "nested/deeper/inner.jpg": _pil_bytes(good, "JPEG"),
        ".DS_Store": b"\x00\x01junk",
        ".hidden_dir/x.jpg": _pil_bytes(good, "JPEG"),
    }
    exif = good.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    files["rotated.jpg"] = _pil_bytes(good, "JPEG", exif=exif)
    ok, png16 = cv2.imencode(".png", np.full((40, 60, 3), 50000, np.uint16))
    files["sixteen.png"] = png16.tobytes()
    for name, data in files.items():
        (cat / name).write_bytes(data)
    dog = root / "dog"
    dog.mkdir()
    for i in range(3):
        (dog / f"d{i}.png").write_bytes(_pil_bytes(Image.new("RGB", (30, 30), (20, 20, 200)), "PNG"))
    (root / "stray.jpg").write_bytes(_pil_bytes(good, "JPEG"))
    return root


def test_scan_reports_hidden_and_stray_files(messy):
    ds = scan_folder(messy)
    assert ds.classes == ["cat", "dog"]
    reasons = {p.split("/")[-1]: r for p, r in ((s.path, s.reason) for s in ds.skipped)}
    assert reasons[".DS_Store"] == "hidden file"
    assert reasons["x.jpg"] == "hidden file"
    assert reasons["stray.jpg"] == "not inside a class folder"
    names = {s.path.name for s in ds.samples}
    assert "inner.jpg" in names and "ünïcödé name with spaces.jpg" in names


def test_bad_files_are_skipped_with_reasons_and_the_rest_decode(messy, tmp_path):
    ds = scan_folder(messy)
    cache = EmbeddingCache(tmp_path / "cache", "fake")
    out = embed_samples(ds.samples, ("orig",), mean_colour, SPEC, cache, batch_size=4)
    skipped = {s.path.split("/")[-1]: s.reason for s in out.skipped}
    assert skipped == {
        "zero.jpg": "empty file (0 bytes)",
        "truncated.jpg": "not a decodable image (truncated, corrupt, or not an image format)",
        "notes.txt": "not an image, or not in a format tl-edge reads (JPEG, PNG, GIF, BMP, WebP, TIFF, PNM)",
    }
    kept = {ds.samples[i].path.name for i in out.kept}
    for name in ("png_named.jpg", "cmyk.jpg", "gray.png", "rgba.png", "palette.png", "sixteen.png", "rotated.jpg",
                 "ünïcödé name with spaces.jpg", "inner.jpg"):
        assert name in kept
    assert out.vectors["orig"].shape == (len(out.kept), 3)


def test_exif_rotation_is_honoured(messy):
    assert load_image(messy / "cat" / "rotated.jpg").shape == (60, 40, 3)  # stored 60x40 landscape


def test_colour_conversions_keep_the_colour(messy):
    red = load_image(messy / "cat" / "plain.jpg").reshape(-1, 3).mean(0)
    assert red[0] > 150 and red[2] < 80  # RGB order, not BGR
    for name in ("cmyk.jpg", "rgba.png", "palette.png"):
        rgb = load_image(messy / "cat" / name).reshape(-1, 3).mean(0)
        assert np.allclose(rgb, red, atol=25), name
    assert load_image(messy / "cat" / "sixteen.png").dtype == np.uint8


def test_huge_image_is_decoded_and_shrunk(tmp_path):
    img = np.zeros((6000, 8000, 3), np.uint8)  # 48 megapixels: just under the default limit
    img[:, 4000:] = 255
    path = tmp_path / "huge.jpg"
    cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, 50])
    small = prepare_image(load_image(path), SPEC)
    assert small.shape == (16, 16, 3)
    assert small[:, :7].mean() < 10 and small[:, 9:].mean() > 245


def test_cache_hits_on_second_run_and_remembers_bad_files(messy, tmp_path):
    ds = scan_folder(messy)
    calls = []

    def counting(batch):
        calls.append(len(batch))
        return mean_colour(batch)

    cache = EmbeddingCache(tmp_path / "cache", "fake")
    first = embed_samples(ds.samples, ("orig", "flip"), counting, SPEC, cache, batch_size=8)
    # The empty and the non-image file are refused from their first bytes, before the cache is asked.
    assert first.hits == 0 and first.misses == 2 * (len(ds.samples) - 2)
    computed = sum(calls)
    calls.clear()
    second = embed_samples(ds.samples, ("orig", "flip"), counting, SPEC, cache, batch_size=8)
    assert calls == [] and second.misses == 0 and second.hits == 2 * len(second.kept)
    assert len(second.skipped) == len(first.skipped) == 3
    np.testing.assert_array_equal(first.vectors["flip"], second.vectors["flip"])
    assert computed == 2 * len(first.kept)
    # A new view misses only for that view; another backbone key misses everything.
    third = embed_samples(ds.samples, ("orig", "crop"), counting, SPEC, cache)
    assert third.misses == len(third.kept)
    other = embed_samples(ds.samples, ("orig",), counting, SPEC, EmbeddingCache(tmp_path / "cache", "other"))
    assert other.hits == 0


def test_a_damaged_cache_entry_is_recomputed(messy, tmp_path):
    ds = scan_folder(messy)
    cache = EmbeddingCache(tmp_path / "cache", "fake")
    embed_samples(ds.samples, ("orig",), mean_colour, SPEC, cache)
    victim = next((cache.dir).rglob("*.npy"))
    victim.write_bytes(b"garbage")
    again = embed_samples(ds.samples, ("orig",), mean_colour, SPEC, cache)
    assert again.misses == 1


def test_views():
    assert parse_views("flip,crop") == ("orig", "flip", "crop")
    assert parse_views("none") == ("orig",)
    with pytest.raises(ConfigError, match="'rotate' is unknown"):
        parse_views("rotate")
    img = np.zeros((20, 30, 3), np.uint8)
    img[:, :15] = 255
    flipped = view_image(img, "flip", SPEC)
    assert flipped[:, :8].mean() < 30 and flipped[:, 8:].mean() > 200
    crop = view_image(img, "crop", SPEC)
    assert crop.shape == (16, 16, 3)


def test_training_and_device_paths_give_the_same_input(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    path = tmp_path / "frame.png"
    cv2.imwrite(str(path), rgb[:, :, ::-1])
    for resize in ("squash", "center_crop"):
        spec = InputSpec(24, 24, resize=resize)
        train_time = view_image(load_image(path), "orig", spec)
        device_time = prepare_frame(cv2.imread(str(path)), spec)  # the camera gives BGR frames
        np.testing.assert_array_equal(train_time, device_time)


def test_stratified_split_is_seeded_and_per_class():
    y = np.array([0] * 10 + [1] * 5 + [2] * 2)
    tr, va = stratified_split(y, 0.2, seed=3, classes=["a", "b", "c"])
    assert set(tr) | set(va) == set(range(len(y))) and not set(tr) & set(va)
    assert [int((y[va] == c).sum()) for c in range(3)] == [2, 1, 1]
    tr2, va2 = stratified_split(y, 0.2, seed=3, classes=["a", "b", "c"])
    np.testing.assert_array_equal(va, va2)
    with pytest.raises(DataError, match="'c' has 1 usable image"):
        stratified_split(np.array([0, 0, 0, 1, 1, 2]), 0.2, seed=0, classes=["a", "b", "c"])
    with pytest.raises(DataError, match="between 0 and 1"):
        stratified_split(y, 1.5, seed=0, classes=["a", "b", "c"])


def test_missing_and_empty_data_dir(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        scan_folder(tmp_path / "nope")
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.jpg").write_bytes(b"x")
    with pytest.raises(DataError, match="no class sub-folders"):
        scan_folder(tmp_path / "flat")
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    with pytest.raises(DataError, match="holds no files"):
        scan_folder(tmp_path / "empty")
