"""Batched rendering of Sequential-MNIST frames (docs/datasets.md, 'Sequential MNIST').

One frame = resize 28 -> 24, zero-pad to 32, rotate + translate (ONE batched affine
warp, bilinear, zero fill), colour by an HSV hue, divide by 255, optionally add a
background under dark pixels. Everything works on a whole batch of frames at once.

The authors warp with cv2.warpPerspective and the homography of their `get_RTmat`.
Worked out, that homography is the affine map (pixel coordinates, pixel centres at
integers)
    dst = s(a) R(a) (src - c) + c + s(a) p,   c = (S/2, S/2),
    s(a) = f / (1 + f),  f = diag / (2 sin a) (f = diag when sin a == 0),  diag = S sqrt 2,
i.e. a rotation about pixel (16, 16) (not the geometric centre 15.5) with an
angle-dependent zoom between 0.958 and 1.046 that also scales the translation.
warp_mode="authors" (default) reproduces it; warp_mode="exact" is the pure rotation
about the geometric centre plus translation by p (the textbook description), for comparisons.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

WARP_MODES = ("authors", "exact")


def resize_and_pad(images: torch.Tensor, size: int = 24, pad: int = 4) -> torch.Tensor:
    """Digits (N, 28, 28) in 0..255 -> (N, 1, size + 2 pad, size + 2 pad) float32 in 0..255.

    The authors resize with skimage.transform.resize (order 1, anti_aliasing=True): a
    Gaussian pre-filter with sigma = (28/24 - 1)/2 = 0.083, whose kernel truncated at
    4 sigma has radius 0 (the identity), then bilinear sampling at pixel centres
    (src = (dst + 0.5) * 28/24 - 0.5), which never reaches the border at this ratio.
    That is exactly F.interpolate(bilinear, align_corners=False, antialias=False).
    """
    x = images.to(torch.float32).unsqueeze(1)  # (N, 1, 28, 28)
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                      antialias=False)
    return F.pad(x, (pad, pad, pad, pad))  # (N, 1, 32, 32)


def authors_zoom(angle: torch.Tensor, size: int) -> torch.Tensor:
    """s(a) of the authors' homography (module docstring): (B,) -> (B,)."""
    diag = math.sqrt(2.0) * size
    sin = torch.sin(angle)
    focal = torch.where(sin != 0, diag / (2 * torch.where(sin != 0, sin, 1.0)),
                        torch.full_like(sin, diag))
    return focal / (1 + focal)


def warp_theta(angle: torch.Tensor, shift: torch.Tensor, size: int,
               mode: str = "authors") -> torch.Tensor:
    """Angle (B,), pixel shift (B, 2) = (dx, dy) -> theta (B, 2, 3) for F.affine_grid.

    theta maps normalised output coordinates to normalised input coordinates
    (align_corners=False: u = (2 x + 1) / S - 1), i.e. the inverse of the forward map.
    """
    if mode not in WARP_MODES:
        raise ValueError(f"warp mode {mode!r}: use one of {WARP_MODES}")
    cos, sin = torch.cos(angle), torch.sin(angle)
    if mode == "authors":
        zoom = authors_zoom(angle, size)
        centre = (2 * (size / 2) + 1) / size - 1  # pixel S/2 in normalised coordinates
    else:
        zoom = torch.ones_like(angle)
        centre = 0.0
    # Inverse map: src = R^T (dst - c) / s - (2/S) R^T p + c.
    rt = torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], -2)  # (B,2,2)
    shift_n = shift * (2.0 / size)  # (B, 2) normalised
    c = torch.full_like(shift, centre)  # (B, 2)
    linear = rt / zoom[:, None, None]
    offset = c - (linear @ c.unsqueeze(-1)).squeeze(-1) - (rt @ shift_n.unsqueeze(-1)).squeeze(-1)
    return torch.cat([linear, offset.unsqueeze(-1)], dim=-1)  # (B, 2, 3)


def affine_grid(theta: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """F.affine_grid(theta, (B, C, H, W), align_corners=False) -> (B, H, W, 2), computed
    as two broadcast multiply-adds (several times faster than F.affine_grid on CPU)."""
    xs = (torch.arange(width, device=theta.device, dtype=theta.dtype) * 2 + 1) / width - 1
    ys = (torch.arange(height, device=theta.device, dtype=theta.dtype) * 2 + 1) / height - 1
    t = theta[:, :, :, None, None]  # (B, 2, 3, 1, 1)
    grid = t[:, :, 0] * xs[None, None, None, :] + t[:, :, 1] * ys[None, None, :, None] + t[:, :, 2]
    return grid.permute(0, 2, 3, 1)  # (B, 2, H, W) -> (B, H, W, 2)


def warp(images: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Bilinear, zero-filled affine warp: (B, C, S, S), theta (B, 2, 3) -> (B, C, S, S)."""
    grid = affine_grid(theta.to(images.dtype), images.shape[-2], images.shape[-1])
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False)


def hsv_to_rgb(hue: torch.Tensor) -> torch.Tensor:
    """Hue (B,) in any real range (periodic, period 1), saturation = value = 1 -> RGB (B, 3).

    Piecewise-linear, identical to colorsys.hsv_to_rgb(h % 1, 1, 1).
    """
    k = torch.tensor([0.0, 4.0, 2.0], dtype=hue.dtype, device=hue.device)  # R, G, B phase
    sector = torch.remainder(hue.unsqueeze(-1) * 6 + k, 6.0)  # (B, 3)
    return (torch.abs(sector - 3) - 1).clamp(0, 1)


def add_background(frames: torch.Tensor, backgrounds: torch.Tensor,
                   threshold: float = 0.3) -> torch.Tensor:
    """MNIST-bg compositing: where the channel sum < threshold, pixel + background,
    clipped at 1. frames, backgrounds: (B, 3, S, S) in [0, 1]."""
    dark = frames.sum(dim=1, keepdim=True) < threshold  # (B, 1, S, S)
    return torch.where(dark, frames + backgrounds, frames).clamp(max=1.0)


def render_digit_frames(sources: torch.Tensor, angle: torch.Tensor, hue: torch.Tensor,
                        shift: torch.Tensor, backgrounds: torch.Tensor | None = None,
                        warp_mode: str = "authors") -> torch.Tensor:
    """Frames of Sequential MNIST, all at once.

    sources (B, 1, S, S) grey in 0..255 (resize_and_pad output) on the target device;
    angle (B,), hue (B,), shift (B, 2) on any device (kept in float64 on the CPU by the
    generators so every device gets the same parameters); backgrounds (B, 3, S, S) in
    [0, 1] or None -> frames (B, 3, S, S) float32 in [0, 1].
    """
    size = sources.shape[-1]
    theta = warp_theta(angle, shift, size, warp_mode).to(sources.device, torch.float32)
    grey = warp(sources, theta)  # (B, 1, S, S)
    rgb = hsv_to_rgb(hue).to(sources.device, torch.float32)  # (B, 3)
    frames = grey * (rgb[:, :, None, None] / 255.0)  # (B, 3, S, S)
    if backgrounds is not None:
        frames = add_background(frames, backgrounds.to(frames.dtype))
    return frames.clamp_(0.0, 1.0)  # float32 rounding can overshoot 1 by ~1e-7
