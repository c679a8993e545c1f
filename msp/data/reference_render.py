"""A straightforward per-frame NumPy renderer of Sequential-MNIST, used only to measure
the batched torch renderer (render.py) in tests and bench/bench_data.py.

It follows the authors' pipeline step by step, written independently:
skimage-style resize (Gaussian pre-filter sigma = (in/out - 1)/2 truncated at 4 sigma,
then order-1 sampling at pixel centres), zero padding, the homography of a 3-D rotation
about the z axis seen through a pinhole (their get_RTmat: lift to z = 1, rotate,
translate by (dx, dy, f), project with focal f = diag / (2 sin a)), cv2-style bilinear
remapping (optionally with cv2's 1/32-pixel fixed-point coordinates), colorsys HSV
colouring and MNIST-bg compositing. float64 throughout, one frame at a time.
"""

from __future__ import annotations

import colorsys
import math

import numpy as np


def _bilinear(image: np.ndarray, sx: np.ndarray, sy: np.ndarray, outside: str) -> np.ndarray:
    """Sample image (H, W) at float coordinates; outside: 'zero' or 'mirror'."""
    h, w = image.shape
    x0, y0 = np.floor(sx).astype(int), np.floor(sy).astype(int)
    ax, ay = sx - x0, sy - y0
    out = np.zeros(sx.shape)
    for dy, wy in ((0, 1 - ay), (1, ay)):
        for dx, wx in ((0, 1 - ax), (1, ax)):
            xi, yi = x0 + dx, y0 + dy
            if outside == "zero":
                valid = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
                value = np.where(valid, image[np.clip(yi, 0, h - 1), np.clip(xi, 0, w - 1)], 0.0)
            else:  # mirror about the edge pixel centres
                xi = np.abs(xi) % (2 * w - 2)
                yi = np.abs(yi) % (2 * h - 2)
                xi = np.where(xi >= w, 2 * w - 2 - xi, xi)
                yi = np.where(yi >= h, 2 * h - 2 - yi, yi)
                value = image[yi, xi]
            out += wx * wy * value
    return out


def resize_like_skimage(image: np.ndarray, out: int) -> np.ndarray:
    """(n, n) -> (out, out) as skimage.transform.resize(order=1, anti_aliasing=True)."""
    image = image.astype(np.float64)
    n = image.shape[0]
    sigma = max(0.0, (n / out - 1) / 2)
    radius = int(4.0 * sigma + 0.5)
    if radius > 0:
        x = np.arange(-radius, radius + 1)
        kernel = np.exp(-0.5 * (x / sigma) ** 2)
        kernel /= kernel.sum()
        padded = np.pad(image, radius, mode="symmetric")
        image = np.apply_along_axis(lambda r: np.convolve(r, kernel, "valid"), 1, padded)
        image = np.apply_along_axis(lambda c: np.convolve(c, kernel, "valid"), 0, image)
    coords = (np.arange(out) + 0.5) * (n / out) - 0.5
    sy, sx = np.meshgrid(coords, coords, indexing="ij")
    return _bilinear(image, sx, sy, "mirror")


def authors_homography(angle: float, size: int, dx: float, dy: float) -> np.ndarray:
    """3x3 forward homography (source pixel -> destination pixel) of the authors' warp."""
    diag = math.hypot(size, size)
    focal = diag / (2 * math.sin(angle)) if math.sin(angle) != 0 else diag
    lift = np.array([[1, 0, -size / 2], [0, 1, -size / 2], [0, 0, 1], [0, 0, 1]], float)
    c, s = math.cos(angle), math.sin(angle)
    rotate = np.array([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], float)
    move = np.array([[1, 0, 0, dx], [0, 1, 0, dy], [0, 0, 1, focal], [0, 0, 0, 1]], float)
    project = np.array([[focal, 0, size / 2, 0], [0, focal, size / 2, 0], [0, 0, 1, 0]], float)
    return project @ move @ rotate @ lift


def exact_affine(angle: float, size: int, dx: float, dy: float) -> np.ndarray:
    """3x3 forward map of a pure rotation about the geometric centre, then a shift."""
    c, s, centre = math.cos(angle), math.sin(angle), (size - 1) / 2
    return np.array([[c, -s, centre - c * centre + s * centre + dx],
                     [s, c, centre - s * centre - c * centre + dy], [0, 0, 1]])


def warp_like_cv2(image: np.ndarray, forward: np.ndarray, quantize: bool) -> np.ndarray:
    """cv2.warpPerspective(INTER_LINEAR, BORDER_CONSTANT 0): each destination pixel samples
    the source at H^-1 (x, y, 1); cv2 rounds coordinates to 1/32 pixel (quantize=True)."""
    size = image.shape[0]
    inverse = np.linalg.inv(forward)
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    src = inverse @ np.stack([x.ravel(), y.ravel(), np.ones(size * size)])
    sx, sy = (src[0] / src[2]).reshape(size, size), (src[1] / src[2]).reshape(size, size)
    if quantize:
        sx, sy = np.round(sx * 32) / 32, np.round(sy * 32) / 32
    return _bilinear(image, sx, sy, "zero")


def render_frame(digit28: np.ndarray, angle: float, hue: float, dx: float, dy: float,
                 background: np.ndarray | None = None, warp_mode: str = "authors",
                 quantize: bool = False) -> np.ndarray:
    """One frame (3, 32, 32) float64 in [0, 1] from a (28, 28) digit in 0..255."""
    small = resize_like_skimage(digit28, 24)
    padded = np.pad(small, 4)
    forward = (authors_homography(angle, 32, dx, dy) if warp_mode == "authors"
               else exact_affine(angle, 32, dx, dy))
    grey = warp_like_cv2(padded, forward, quantize)
    rgb = np.asarray(colorsys.hsv_to_rgb(hue % 1.0, 1.0, 1.0))
    frame = grey[None] * rgb[:, None, None] / 255.0
    if background is not None:
        dark = frame.sum(axis=0, keepdims=True) < 0.3
        frame = np.minimum(frame + background * dark, 1.0)
    return frame
