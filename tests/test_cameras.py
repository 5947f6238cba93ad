"""The camera hands the model its pixels: picamera2 adapter on the fake Picamera2, reduced JPEG decodes, fast input."""

import cv2
import numpy as np
import pytest

from tl.device.hw.cameras import PiCamera, Reconnecting
from tl.device.hw.fakes import FakeClock, FakePicamera2Factory
from tl.device.hw.feed import ModelFeed, jpeg_size
from tl.device.hw.frames import Frame, Gap
from tl.device.hw.sources import FolderSource, open_source
from tl.device.model import contract
from tl.device.model.contract import InputSpec, prepare_frame, prepare_image, quantize_input, scale_pixels

SPEC = InputSpec(224, 224)


def porch(seed=0, size=(640, 480)):
    """A smooth BGR scene with an object in it (smooth, so that scaled copies compare closely)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (size[1] // 40, size[0] // 40, 3), dtype=np.uint8)
    frame = cv2.resize(small, size, interpolation=cv2.INTER_CUBIC)
    cv2.circle(frame, (size[0] // 2, size[1] // 2), size[1] // 4, (30, 200, 90), -1)
    return cv2.GaussianBlur(frame, (9, 9), 0)


def live(factory, feed, clock, size=(640, 480)):
    camera = PiCamera(fps=10, size=size, feed=feed, factory=factory)
    return camera, Reconnecting(camera, clock=clock, sleep=clock.sleep)


@pytest.mark.parametrize(("formats", "expected"), [(("YUV420",), "YUV420"), (("YUV420", "BGR888"), "BGR888")])
def test_picamera_asks_the_isp_for_the_model_size(formats, expected):
    clock = FakeClock()
    factory = FakePicamera2Factory([3], scene=[porch()], clock=clock, lores_formats=formats)
    camera, source = live(factory, ModelFeed(SPEC), clock)
    frame = next(source.frames())
    config = factory.cameras[0].configs[-1]
    assert config["main"] == {"size": (640, 480), "format": "RGB888"}
    assert config["lores"] == {"size": (224, 224), "format": expected}
    assert config["controls"] == {"FrameRate": 10.0}
    assert camera.lores_format == expected  # a Pi 4 (YUV only) falls back; a Pi 5 gives R, G, B at once
    assert frame.pixels.shape == (224, 224, 3) and frame.pixels.flags.c_contiguous
    exact = prepare_frame(porch(), SPEC)
    # The ISP's own scaling (INTER_AREA here); YUV420's half-resolution colour costs a few levels at edges.
    assert np.abs(frame.pixels.astype(int) - exact).mean() < (5 if expected == "YUV420" else 0.5)
    source.close()


def test_picamera_sizes_lores_so_the_roi_comes_out_at_the_model_size():
    clock = FakeClock()
    factory = FakePicamera2Factory([2], scene=[porch()], clock=clock)
    roi = (80, 0, 480, 480)
    camera, source = live(factory, ModelFeed(SPEC, roi), clock)
    frame = next(source.frames())
    lores = factory.cameras[0].configs[-1]["lores"]["size"]
    assert lores == (300, 224)  # 640 * 224/480 rounded up to even; the ROI is 225 of its 300 columns
    exact = prepare_frame(porch(), SPEC, roi)
    assert frame.pixels.shape == exact.shape
    assert np.abs(frame.pixels.astype(int) - exact).mean() < 3
    source.close()


def test_full_frame_comes_from_the_main_stream_only_when_asked():
    clock = FakeClock()
    scene = [porch(0), porch(1)]
    factory = FakePicamera2Factory([4], scene=scene, clock=clock)
    camera, source = live(factory, ModelFeed(SPEC), clock)
    frames = source.frames()
    first = next(frames)
    cam = factory.cameras[0]
    assert cam.made == {"lores": 1}  # no full-size copy for a frame nobody keeps
    snapshot = first.image  # a decision: the snapshot is the same instant, at full size
    assert cam.made == {"lores": 1, "main": 1}
    np.testing.assert_array_equal(snapshot, scene[0])
    second = next(frames)
    assert cam.released == 1  # the first request went back when the next frame was grabbed
    assert second.image.shape == (480, 640, 3)
    source.close()
    assert cam.released == 2 and cam.closed


def test_picamera_reconnects_after_the_camera_vanishes():
    clock = FakeClock()
    factory = FakePicamera2Factory([3, "fail", 2], scene=[porch()], clock=clock)
    _, source = live(factory, ModelFeed(SPEC), clock)
    items = []
    for item in source.frames():
        items.append(item)
        if len(items) == 8:
            break
    kinds = ["gap" if isinstance(item, Gap) else "frame" for item in items]
    assert kinds == ["frame"] * 3 + ["gap", "gap"] + ["frame"] * 2 + ["gap"]
    assert [item.index for item in items if isinstance(item, Frame)] == [0, 1, 2, 3, 4]
    assert "vanished" in items[3].reason and "no camera found" in items[4].reason
    made = [cam for cam in factory.cameras if cam is not None]
    assert all(cam.closed for cam in made) and len(made[1].configs) == 1
    assert all(item.pixels.shape == (224, 224, 3) for item in items if isinstance(item, Frame))


def test_picamera_without_a_feed_delivers_full_bgr_frames():
    clock = FakeClock()
    factory = FakePicamera2Factory([2], scene=[porch()], clock=clock)
    _, source = live(factory, None, clock)
    frame = next(source.frames())
    assert frame.pixels is None and factory.cameras[0].configs[-1]["lores"] is None
    np.testing.assert_array_equal(frame.image, porch())
    source.close()


def write_jpegs(folder, count=3, size=(640, 480)):
    folder.mkdir()
    for i in range(count):
        cv2.imwrite(str(folder / f"f{i}.jpg"), porch(i, size), [cv2.IMWRITE_JPEG_QUALITY, 95])


def test_jpeg_size_reads_the_header(tmp_path):
    write_jpegs(tmp_path / "f", 1, (321, 123))
    data = (tmp_path / "f" / "f0.jpg").read_bytes()
    assert jpeg_size(data) == (321, 123)
    assert jpeg_size(b"\x89PNG....") is None and jpeg_size(data[:8]) is None


@pytest.mark.parametrize("roi", [None, (80, 0, 480, 480)])
def test_folder_of_big_jpegs_is_decoded_reduced_and_close_to_the_full_path(tmp_path, roi):
    write_jpegs(tmp_path / "f")
    source = open_source(str(tmp_path / "f"), spec=SPEC, roi=roi)
    for frame, path in zip(source.frames(), sorted((tmp_path / "f").iterdir()), strict=True):
        full = cv2.imread(str(path))
        exact = prepare_frame(full, SPEC, roi)
        # The documented resize rule (contract.reduction): a level or two from the full decode's input.
        assert frame.pixels.shape == exact.shape
        assert np.abs(frame.pixels.astype(int) - exact).mean() < 2
        np.testing.assert_array_equal(frame.image, full)  # the snapshot is the full frame, decoded on demand


def test_small_frames_and_pngs_keep_the_exact_path(tmp_path):
    write_jpegs(tmp_path / "small", 2, (320, 240))  # less than twice the model's size: no gain
    frames = list(FolderSource(tmp_path / "small", feed=ModelFeed(SPEC)).frames())
    assert all(f.pixels is None and f.image.shape == (240, 320, 3) for f in frames)
    (tmp_path / "png").mkdir()
    cv2.imwrite(str(tmp_path / "png" / "a.png"), porch())
    assert next(FolderSource(tmp_path / "png", feed=ModelFeed(SPEC)).frames()).pixels is None


def test_reduction_rule():
    assert contract.reduction((0, 0, 640, 480), SPEC) == 2
    assert contract.reduction((0, 0, 1920, 1080), SPEC) == 4
    assert contract.reduction((0, 0, 447, 480), SPEC) == 1
    assert contract.reduction((0, 0, 4000, 3000), InputSpec(96, 96)) == 8


def test_prepare_frame_is_bit_identical_to_convert_then_resize():
    rng = np.random.default_rng(0)
    bgr = rng.integers(0, 256, (97, 131, 3), dtype=np.uint8)
    for spec in (InputSpec(24, 24), InputSpec(30, 20, resize="center_crop"), InputSpec(200, 150)):
        for roi in (None, (5, 7, 60, 50)):
            crop = bgr if roi is None else bgr[7:57, 5:65]
            expected = prepare_image(cv2.cvtColor(crop, cv2.COLOR_BGR2RGB), spec)
            np.testing.assert_array_equal(prepare_frame(bgr, spec, roi), expected)


class _Interpreter:
    """Records set_tensor, with the input details of a real model's input tensor."""

    def __init__(self, dtype, quantization):
        self.detail = {"index": 0, "dtype": dtype, "quantization": quantization}
        self.tensor = None

    def get_input_details(self):
        return [self.detail]

    def set_tensor(self, index, value):
        self.tensor = value


@pytest.mark.parametrize(("dtype", "quantization", "pixel_range"), [
    (np.uint8, (1 / 128, 128), "-1..1"),  # Google's quantized MobileNets
    (np.uint8, (1.0, 0), "0..255"),  # raw pixels: no table at all
    (np.int8, (1.0, -128), "0..255"),  # tl-edge int8
    (np.float32, (0.0, 0), "0..255"),
    (np.float32, (0.0, 0), "-1..1"),
])
def test_set_input_table_gives_the_same_tensor_as_quantizing(dtype, quantization, pixel_range):
    pixels = np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    pixels[0, :2, 0] = [0, 255]
    interpreter = _Interpreter(dtype, quantization)
    contract.set_input(interpreter, pixels, pixel_range)
    expected = quantize_input(scale_pixels(pixels, pixel_range), interpreter.detail)
    assert interpreter.tensor.dtype == expected.dtype and interpreter.tensor.shape == (1, 16, 16, 3)
    np.testing.assert_array_equal(interpreter.tensor, expected)
