"""The runtime contract: how an image becomes a model input and how outputs become scores.

Training, conversion (calibration and accuracy checks), benchmarks and the device all call these
functions, so the model always sees the same pixels for the same picture.
"""

import dataclasses
import functools

import cv2
import numpy as np

from tl.device.errors import ConfigError, ModelError

RESIZE_RULES = ("squash", "center_crop")
# Input value ranges a model may have been trained on, as (low, high) for pixels 0 and 255.
# tl-edge models take "0..255" (normalisation inside the model); Google's quantized ImageNet
# models take "-1..1", which their uint8 input quantization (scale 1/128, zero point 128) encodes.
PIXEL_RANGES = {"0..255": (0.0, 255.0), "0..1": (0.0, 1.0), "-1..1": (-1.0, 1.0)}
INPUT_DTYPES = (np.uint8, np.int8, np.float32)


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """What a model expects as input.

    Attributes:
      height, width: input size in pixels.
      color: channel order the model was trained on; always "RGB" for tl-edge models.
      resize: "squash" (resize the whole picture to H×W, ignoring aspect ratio, as Keras'
        image_dataset_from_directory does) or "center_crop" (crop the central region of the
        target aspect ratio first).
      pixel_range: values the input tensor takes before quantization; "0..255" means raw
        pixels, with normalisation inside the model.
    """

    height: int
    width: int
    color: str = "RGB"
    resize: str = "squash"
    pixel_range: str = "0..255"

    def __post_init__(self):
        if self.resize not in RESIZE_RULES:
            raise ConfigError(f"resize rule {self.resize!r} is unknown; use one of {', '.join(RESIZE_RULES)}")
        if self.color != "RGB":
            raise ConfigError(f"colour order {self.color!r} is not supported; tl-edge models take RGB")
        if self.height < 1 or self.width < 1:
            raise ConfigError(f"input size {self.height}x{self.width} must be positive")

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ConfigError(f"unknown input-spec keys: {', '.join(sorted(unknown))}")
        return cls(**d)


def prepare_image(rgb, spec):
    """Resizes an RGB uint8 image to the model's input size by the spec's rule.

    Args:
      rgb: (H, W, 3) uint8, RGB order (from `tl.device.model.image.load_image`).
      spec: the model's InputSpec.

    Returns:
      (spec.height, spec.width, 3) uint8, contiguous.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {rgb.shape}")
    if spec.resize == "center_crop":
        rgb = _center_crop(rgb, spec.width / spec.height)
    h, w = rgb.shape[:2]
    if (h, w) == (spec.height, spec.width):
        return np.ascontiguousarray(rgb)
    # INTER_AREA averages when shrinking (no aliasing on big photos); it is bilinear-like when growing.
    shrinking = h >= spec.height and w >= spec.width
    interp = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(rgb, (spec.width, spec.height), interpolation=interp)


def prepare_frame(bgr, spec, roi=None):
    """Turns a camera/video BGR frame into a model input: crop the ROI, resize, BGR→RGB.

    The same pixels as `prepare_image(cvtColor(crop, BGR2RGB), spec)`, bit for bit: resizing works
    on each channel alone, so the channel swap commutes with it and is done on the small image.

    Args:
      bgr: (H, W, 3) uint8 frame in OpenCV's BGR order.
      spec: the model's InputSpec.
      roi: optional (x, y, w, h) region of interest in frame pixels.
    """
    if roi is not None:
        bgr = crop_roi(bgr, roi)
    return cv2.cvtColor(prepare_image(bgr, spec), cv2.COLOR_BGR2RGB)


def model_region(width, height, spec, roi=None):
    """The (x, y, w, h) part of a width×height frame that the model sees: the ROI, centre-cropped if the rule says so."""
    x, y, w, h = (int(v) for v in roi) if roi is not None else (0, 0, int(width), int(height))
    if spec.resize == "center_crop":
        aspect = spec.width / spec.height
        if w / h > aspect:
            new_w = max(1, round(h * aspect))
            x, w = x + (w - new_w) // 2, new_w
        else:
            new_h = max(1, round(w / aspect))
            y, h = y + (h - new_h) // 2, new_h
    return x, y, w, h


def reduction(region, spec, factors=(8, 4, 2)):
    """The largest factor a frame may be shrunk by (at decode, or by the camera) before the model's resize.

    The device's resize rule: the region the model sees is first shrunk by a whole factor 2, 4 or 8
    (a JPEG decoded at reduced size, `cv2.IMREAD_REDUCED_COLOR_*`) as long as it stays at least the
    model's input size, then resized to it (`fit_region`: bilinear for the < 2x left, INTER_AREA when
    a camera stream leaves more). Both steps average pixels, so the input
    differs from `prepare_frame`'s by a level or two (tests/test_cameras.py measures it); training,
    conversion and any image no bigger than twice the input use `prepare_frame`/`prepare_image` exactly.

    Args:
      region: (x, y, w, h) of the model's region (`model_region`) in frame pixels.
      spec: the model's InputSpec.
      factors: the factors to try, largest first.

    Returns:
      8, 4, 2 or 1.
    """
    w, h = region[2], region[3]
    return next((f for f in factors if w // f >= spec.width and h // f >= spec.height), 1)


def scale_region(region, factor, width, height):
    """Maps an (x, y, w, h) region onto a frame shrunk by `factor` to width×height, kept inside it."""
    x0, y0 = min(width - 1, round(region[0] / factor)), min(height - 1, round(region[1] / factor))
    x1 = min(width, max(x0 + 1, round((region[0] + region[2]) / factor)))
    y1 = min(height, max(y0 + 1, round((region[1] + region[3]) / factor)))
    return x0, y0, x1 - x0, y1 - y0


def fit_region(image, region, spec):
    """Crops `region` (x, y, w, h) out of `image` and resizes it to the model's size.

    The colour order is kept. Used on frames that a camera or a reduced decode already shrank.
    """
    x, y, w, h = region
    crop = image[y : y + h, x : x + w]
    if (h, w) == (spec.height, spec.width):
        return np.ascontiguousarray(crop)
    # Less than 2x left to shrink (the frame was shrunk already): bilinear samples every pixel anyway,
    # at a fifth of INTER_AREA's cost at a fractional factor.
    area = w >= 2 * spec.width or h >= 2 * spec.height
    return cv2.resize(crop, (spec.width, spec.height), interpolation=cv2.INTER_AREA if area else cv2.INTER_LINEAR)


def crop_roi(frame, roi):
    """Crops (x, y, w, h) out of a frame, refusing a region outside it."""
    x, y, w, h = (int(v) for v in roi)
    fh, fw = frame.shape[:2]
    if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > fw or y + h > fh:
        raise ConfigError(f"region of interest {x},{y},{w},{h} does not fit in a {fw}x{fh} frame; fix --roi")
    return frame[y : y + h, x : x + w]


def _center_crop(rgb, aspect):
    h, w = rgb.shape[:2]
    if w / h > aspect:  # too wide
        new_w = max(1, round(h * aspect))
        x0 = (w - new_w) // 2
        return rgb[:, x0 : x0 + new_w]
    new_h = max(1, round(w / aspect))
    y0 = (h - new_h) // 2
    return rgb[y0 : y0 + new_h, :]


def quantize_input(pixels, input_detail):
    """Converts prepared uint8 pixels into the dtype and quantization of an input tensor.

    Args:
      pixels: uint8 array (H, W, 3) or (N, H, W, 3) of raw 0..255 pixels.
      input_detail: one entry of `interpreter.get_input_details()`.

    Returns:
      An array of the tensor's dtype with a batch dimension.
    """
    x = pixels if pixels.ndim == 4 else pixels[None]
    dtype = input_detail["dtype"]
    if np.issubdtype(dtype, np.floating):
        return x.astype(dtype)
    scale, zero_point = input_detail["quantization"]
    if scale == 0:
        # Unquantized integer input: the model takes raw pixels as they are.
        return x.astype(dtype)
    info = np.iinfo(dtype)
    q = np.round(x.astype(np.float32) / scale + zero_point)
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize_output(output, output_detail):
    """Converts an output tensor into float scores using its own quantization parameters."""
    if np.issubdtype(output_detail["dtype"], np.integer):
        scale, zero_point = output_detail["quantization"]
        if scale:
            # Always convert to int64 first so the subtraction cannot overflow.
            return scale * (output.astype(np.int64) - zero_point)
    return output.astype(np.float32)


def scale_pixels(pixels, pixel_range="0..255"):
    """Maps raw 0..255 pixels onto the value range a model was trained on.

    Args:
      pixels: uint8 array of raw pixels.
      pixel_range: a key of PIXEL_RANGES (InputSpec.pixel_range).

    Returns:
      `pixels` itself for "0..255" (the hot path stays uint8), else float32 values.
    """
    if pixel_range == "0..255":
        return pixels
    if pixel_range not in PIXEL_RANGES:
        raise ModelError(f"input pixel range {pixel_range!r} is unknown; use one of {', '.join(PIXEL_RANGES)}")
    low, high = PIXEL_RANGES[pixel_range]
    return pixels.astype(np.float32) * np.float32((high - low) / 255.0) + np.float32(low)


def guess_pixel_range(input_detail):
    """Guesses the pixel range of a model that does not say, from its input quantization.

    A quantized input can only represent values in [scale*(qmin-zp), scale*(qmax-zp)]; the known
    range closest to that interval is the one the model was trained on. A float input says
    nothing, so it is taken to be raw pixels, as tl-edge models are.
    """
    dtype = input_detail["dtype"]
    scale, zero_point = input_detail.get("quantization", (0.0, 0))
    if np.issubdtype(dtype, np.floating) or not scale:
        return "0..255"
    info = np.iinfo(dtype)
    low, high = scale * (info.min - zero_point), scale * (info.max - zero_point)
    return min(PIXEL_RANGES, key=lambda r: abs(PIXEL_RANGES[r][0] - low) + abs(PIXEL_RANGES[r][1] - high))


def check_input(input_detail, path, spec=None):
    """Refuses an input tensor tl-edge cannot feed: the one place the input tensor is checked.

    Args:
      input_detail: `interpreter.get_input_details()[0]`.
      path: the model file, for messages.
      spec: the InputSpec the model's info gives, whose size must be the tensor's; None: not compared.

    Raises:
      ModelError: not one (1, H, W, 3) image input, a type other than uint8/int8/float32, or a size
        other than the info's; the message names the file and the fix.
    """
    shape = tuple(int(d) for d in input_detail["shape"])
    if len(shape) != 4 or shape[0] != 1 or shape[3] != 3:
        raise ModelError(f"model {path}: input shape {shape} is not supported; tl-device needs one (1, H, W, 3) "
                         "RGB image input (re-export the model with tl-convert)")
    dtype = np.dtype(input_detail["dtype"])
    if not any(dtype == np.dtype(t) for t in INPUT_DTYPES):
        raise ModelError(f"model {path}: input type {dtype.name} is not supported (uint8, int8 or float32); "
                         "re-export it with tl-convert")
    if spec is not None and (shape[1], shape[2]) != (spec.height, spec.width):
        raise ModelError(f"model {path}: its input tensor is {shape[2]}x{shape[1]} but its info says "
                         f"{spec.width}x{spec.height}; re-export it with tl-convert")


def input_spec_from_tensor(input_detail, path="(model)"):
    """Derives an InputSpec from an input tensor, for model files that carry none.

    The size comes from the tensor's (1, H, W, 3) shape, the resize rule is "squash" and the pixel
    range is guessed from the quantization (see `guess_pixel_range`).

    Raises:
      ModelError: when the tensor is not one tl-edge can feed (see `check_input`).
    """
    check_input(input_detail, path)
    shape = tuple(int(d) for d in input_detail["shape"])
    return InputSpec(height=shape[1], width=shape[2], pixel_range=guess_pixel_range(input_detail))


def set_input(interpreter, pixels, pixel_range="0..255"):
    """Writes prepared pixels into the interpreter's (single) input tensor.

    The tensor values are `quantize_input(scale_pixels(pixels, pixel_range), detail)`, looked up in
    a 256-entry table (the mapping is per pixel value), and for raw-uint8 models the pixels themselves.

    Args:
      interpreter: an allocated interpreter.
      pixels: prepared uint8 pixels (see `prepare_image`).
      pixel_range: the model's InputSpec.pixel_range; raw pixels unless the model says otherwise.
    """
    detail = interpreter.get_input_details()[0]
    scale, zero_point = detail.get("quantization", (0.0, 0))
    table = _input_table(np.dtype(detail["dtype"]).str, float(scale), int(zero_point), pixel_range)
    if table is None:
        x = pixels
    elif table is _FLIP_SIGN:  # int8 = pixel - 128: flipping the top bit of each byte is exactly that
        x = np.bitwise_xor(pixels, np.uint8(0x80)).view(np.int8)
    else:
        x = cv2.LUT(np.ascontiguousarray(pixels).reshape(-1, pixels.shape[-2], pixels.shape[-1]), table)
        x = x.reshape(pixels.shape)
    interpreter.set_tensor(detail["index"], x if x.ndim == 4 else x[None])


_FLIP_SIGN = "flip sign"


@functools.lru_cache(maxsize=16)
def _input_table(dtype, scale, zero_point, pixel_range):
    """The tensor value of each pixel value 0..255 (None: the pixels themselves; _FLIP_SIGN: pixel - 128 as int8)."""
    detail = {"dtype": np.dtype(dtype), "quantization": (scale, zero_point)}
    values = np.arange(256, dtype=np.uint8)
    table = quantize_input(scale_pixels(values, pixel_range), detail)[0]
    if table.dtype == np.uint8 and np.array_equal(table, values):
        return None
    if table.dtype == np.int8 and np.array_equal(table, values.astype(np.int16) - 128):
        return _FLIP_SIGN
    return table
