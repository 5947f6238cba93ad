"""Night frames: an infrared camera's monochrome, flat, noisy picture, brought back toward the daylight photos a model learnt from.

A door camera at night sees in infrared: one grey channel (copied into R, G and B), little contrast and,
in the dark, sensor noise. A backbone trained on colour photos reads such frames poorly (pets/val rendered
as the training's `ir` view: top-1 accuracy 98 % -> 80 %, one dog in five read as "cat";
benchmarks/night.md). Two cheap, adaptive steps on the model's input undo much of it:

- **noise**: the noise level is estimated (Immerkær's Laplacian estimator); a noisy frame (sigma >= 6 grey
  levels, where 95 % of pets/val's clean grey photos stay under 5.5) gets a 5x5 Gaussian blur, a clean one none;
- **contrast**: a frame whose 1st..99th percentile span is under 160 grey levels is stretched to the full range
  (a flat, foggy IR frame); a frame with normal contrast is left as it is.

Colour frames are never touched, and a clean, contrasty monochrome photo passes unchanged.
"""

import numpy as np

MONO_SPREAD = 2.0  # mean |R-G| + |G-B| (grey levels) below which a frame counts as one channel in three copies
NOISY_SIGMA, BLUR = 6.0, 5  # estimated noise (grey levels) from which the frame is blurred, and the kernel
LOW, HIGH = 1.0, 99.0  # percentiles stretched to 0 and 255
FLAT_RANGE = 160.0  # a frame whose LOW..HIGH span is narrower is stretched
MIN_RANGE = 8.0  # ...unless narrower than this (a blank wall, a covered lens): stretching would only show noise
_LAPLACE = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)


def is_monochrome(pixels):
    """True when the (H, W, 3) uint8 RGB pixels carry one grey channel (an infrared camera, a night mode)."""
    p = np.asarray(pixels)[::4, ::4].astype(np.int16)
    return float(np.abs(p[..., 0] - p[..., 1]).mean() + np.abs(p[..., 1] - p[..., 2]).mean()) < MONO_SPREAD


def noise_sigma(grey):
    """Standard deviation of the additive noise of a (H, W) grey image, in grey levels (J. Immerkær, 1996)."""
    import cv2

    h, w = grey.shape
    if h < 3 or w < 3:
        return 0.0
    response = cv2.filter2D(np.asarray(grey, np.float32), -1, _LAPLACE)[1:-1, 1:-1]
    return float(np.sqrt(np.pi / 2) * np.abs(response).sum() / (6.0 * (w - 2) * (h - 2)))


def enhance(pixels):
    """Monochrome (H, W, 3) uint8 pixels denoised if noisy and stretched if flat (see the module's docstring)."""
    import cv2

    grey = np.ascontiguousarray(np.asarray(pixels)[..., 1])
    if noise_sigma(grey) >= NOISY_SIGMA:
        grey = cv2.GaussianBlur(grey, (BLUR, BLUR), 0)
    low, high = np.percentile(grey, (LOW, HIGH))
    if MIN_RANGE <= high - low < FLAT_RANGE:
        table = np.clip((np.arange(256, dtype=np.float32) - low) * (255.0 / (high - low)), 0, 255).astype(np.uint8)
        grey = cv2.LUT(grey, table)
    return np.repeat(grey[..., None], 3, axis=2)


def describe(on):
    """How the start event and check-config say the setting: "night frames enhanced" or "night frames as they come"."""
    return f"night frames {'enhanced' if on else 'as they come'}"


def for_model(pixels, on=True):
    """(pixels the model should see, whether they were enhanced): `enhance`d when `on` and monochrome, else as given.

    The classifier and the embedder both call it, so a pet enrolled from night photos and the door's night frames
    are embedded alike.
    """
    if on and is_monochrome(pixels):
        return enhance(pixels), True
    return pixels, False
