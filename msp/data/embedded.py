"""The offline "embedded" source: procedural stand-ins for every dataset, made in seconds.

- digits: MNIST-like 28x28 grey digits rendered from the fonts matplotlib ships
  (TextPath + Agg), jittered by one batched affine warp, with labels, both splits;
- backgrounds: smooth random colour textures (3, 32, 32) for the MNIST-bg variants;
- 3dshapes: the same six factors and counts as DeepMind 3dshapes (floor, wall, object
  hue 10 each, scale 8, shape 4, orientation 15; 64x64 RGB). The full product is 480,000
  images (5.9 GB), so the prepared files hold its layers (floor/wall/object coverage and
  shading per factor value) and ComposedShapesTable composes any image from its factor
  indices on the device; FactorGridSequences uses it exactly like the real image table;
- smallNORB: ray-cast shaded primitives (ellipsoid, box, cylinder; 2 instances each per
  split, different toys in train and test) under 6 lightings, 9 elevations (30..70 deg),
  18 azimuths (0..340 deg), grey 96x96, in the authors' grid layout.
Everything is deterministic given the seed.
"""

from __future__ import annotations

import colorsys
import functools

import numpy as np
import torch
import torch.nn.functional as F

from msp.data.render import warp

SEED = 20220901

# ----------------------------------------------------------------------------- digits
FONTS = [("DejaVu Sans", "normal", "normal"), ("DejaVu Sans", "bold", "normal"),
         ("DejaVu Sans", "normal", "oblique"), ("DejaVu Serif", "normal", "normal"),
         ("DejaVu Serif", "bold", "italic"), ("DejaVu Sans Mono", "normal", "normal"),
         ("DejaVu Sans Mono", "bold", "oblique"), ("STIXGeneral", "normal", "normal"),
         ("STIXGeneral", "bold", "italic"), ("cmss10", "normal", "normal"),
         ("cmr10", "normal", "normal"), ("cmtt10", "normal", "normal")]
GLYPH = 56  # glyphs are drawn at twice the final 28 px, then box-filtered down
STROKES = (0.0, 1.5, 3.0)  # extra outline width in px at GLYPH resolution


@functools.lru_cache(maxsize=1)
def glyph_bank() -> tuple[np.ndarray, np.ndarray]:
    """Every digit in every available font and stroke width -> (G, 56, 56) float in [0, 1],
    digit labels (G,). The glyph's box is scaled to 40 px high and centred."""
    from matplotlib.backends.backend_agg import RendererAgg
    from matplotlib.font_manager import FontProperties, findfont
    from matplotlib.textpath import TextPath
    from matplotlib.transforms import Affine2D

    glyphs, labels = [], []
    for family, weight, style in FONTS:
        prop = FontProperties(family=family, weight=weight, style=style)
        try:
            findfont(prop, fallback_to_default=False)
        except ValueError:
            continue  # a matplotlib build without this font: use the others
        for digit in range(10):
            path = TextPath((0, 0), str(digit), size=1.0, prop=prop)
            box = path.get_extents()
            scale = 0.72 * GLYPH / max(box.height, box.width * 1.4)
            to_canvas = (Affine2D().translate(-box.x0 - box.width / 2, -box.y0 - box.height / 2)
                         .scale(scale).translate(GLYPH / 2, GLYPH / 2))
            for stroke in STROKES:
                renderer = RendererAgg(GLYPH, GLYPH, 72)
                gc = renderer.new_gc()
                gc.set_antialiased(True)
                gc.set_linewidth(stroke)
                gc.set_foreground((1, 1, 1))
                renderer.draw_path(gc, path, to_canvas, (1, 1, 1))
                glyphs.append(np.asarray(renderer.buffer_rgba())[..., 3] / 255.0)
                labels.append(digit)
    if not glyphs:
        raise RuntimeError("matplotlib ships none of the fonts in msp.data.embedded.FONTS")
    return np.stack(glyphs).astype(np.float32), np.asarray(labels, np.uint8)


def make_digits(n_per_digit: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(10 * n_per_digit, 28, 28) uint8 jittered digits and their labels (uint8)."""
    glyphs, glyph_labels = glyph_bank()
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(10).repeat_interleave(n_per_digit)  # (N,)
    n = len(labels)
    # A random glyph of the right digit for every sample.
    pick = torch.rand(n, generator=gen).numpy()
    choice = np.empty(n, np.int64)
    for digit in range(10):
        rows = labels.numpy() == digit
        candidates = np.flatnonzero(glyph_labels == digit)
        choice[rows] = candidates[(pick[rows] * len(candidates)).astype(np.int64)]
    source = torch.from_numpy(glyphs)[choice].unsqueeze(1)  # (N, 1, 56, 56)
    # Jitter: rotation, anisotropic scale, shear and shift in ONE affine warp.
    u = torch.rand(n, 6, generator=gen) * 2 - 1  # (N, 6) in [-1, 1)
    angle = 0.22 * u[:, 0]
    scale_x, scale_y = 1.0 + 0.15 * u[:, 1], 1.0 + 0.1 * u[:, 2]
    shear = 0.25 * u[:, 3]
    cos, sin = torch.cos(angle), torch.sin(angle)
    rotation = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    shearing = torch.eye(2).repeat(n, 1, 1)  # (N, 2, 2)
    shearing[:, 0, 1] = shear
    # theta is the inverse map (output -> glyph), so dividing by the scale enlarges.
    a = rotation @ shearing / torch.stack([scale_x, scale_y], -1)[:, None, :]
    shift = 0.08 * u[:, 4:6]
    theta = torch.cat([a, shift.unsqueeze(-1)], -1)  # (N, 2, 3)
    warped = warp(source, theta)
    small = F.avg_pool2d(warped, 2)  # (N, 1, 28, 28) anti-aliased
    images = (small.squeeze(1).clamp(0, 1) * 255).round().to(torch.uint8)
    return images.numpy(), labels.numpy().astype(np.uint8)


def make_backgrounds(n: int, seed: int, size: int = 32) -> np.ndarray:
    """(n, 3, size, size) uint8 smooth colour textures: two octaves of bicubic noise."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 4, 4, generator=gen)
    fine = torch.rand(n, 3, 8, 8, generator=gen) - 0.5

    def upsample(x):  # separable bicubic as two small matrix products
        k = x.shape[-1]
        basis = F.interpolate(torch.eye(k).view(k, 1, k, 1), size=(size, 1), mode="bicubic",
                              align_corners=False)[:, 0, :, 0].T  # (size, k)
        return torch.einsum("ik,nckl,jl->ncij", basis, x, basis)

    texture = upsample(coarse) + 0.5 * upsample(fine)
    return (texture.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def mnist_arrays(with_backgrounds: bool, seed: int = SEED) -> dict[str, np.ndarray]:
    """Prepared arrays of the embedded mnist / mnist_bg families (same names as real ones)."""
    arrays = {}
    for split, per_digit, offset in (("train", 600, 0), ("test", 100, 1)):
        images, labels = make_digits(per_digit, seed + offset)
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels
        if with_backgrounds:
            arrays[f"{split}_backgrounds"] = make_backgrounds(len(labels), seed + 10 + offset)
    return arrays


# ----------------------------------------------------------------------------- 3dshapes
SHAPES_FACTORS = ["floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation"]
SHAPES_SIZES = [10, 10, 10, 8, 4, 15]


def _coverage(inside: np.ndarray, factor: int = 2) -> np.ndarray:
    """Supersampled boolean masks (..., fH, fW) -> coverage (..., H, W) in [0, 1]."""
    *lead, h, w = inside.shape
    return inside.reshape(*lead, h // factor, factor, w // factor, factor).mean(axis=(-3, -1))


def shapes_layers(size: int = 64) -> dict[str, np.ndarray]:
    """Layers of the 3dshapes-like scene, all uint8 except the hue palette.

    floor_alpha, floor_shade, wall_shade: (15, S, S) per orientation (the horizon tilts
    and the wall corner moves with the camera); object_alpha, object_shade:
    (8, 4, 15, S, S) per scale, shape (cube, cylinder, sphere, capsule), orientation;
    palette: (10, 3) float32 RGB of the 10 hues.
    """
    ss = 2 * size
    y, x = np.mgrid[0:ss, 0:ss].astype(np.float32) / 2 + 0.25  # pixel units, supersampled
    orient = np.deg2rad(np.linspace(-30, 30, 15, dtype=np.float32))[:, None, None]  # (15,1,1)
    horizon = 0.62 * size + (x - size / 2) * np.tan(orient) * 0.35
    floor_in = y >= horizon  # (15, ss, ss)
    depth = np.clip((y - horizon) / (size - horizon), 0, 1)
    corner = size / 2 + 0.4 * size * np.sin(1.5 * orient)
    wall = np.where(x < corner, 0.9, 0.7) - 0.15 * (y / size)
    floor_alpha = _coverage(floor_in)
    floor_shade = _coverage(np.where(floor_in, 0.55 + 0.45 * depth, 0)) / np.maximum(floor_alpha, 1e-6)
    wall_shade = _coverage(np.where(floor_in, 0, wall)) / np.maximum(1 - floor_alpha, 1e-6)

    scales = np.linspace(0.75, 1.25, 8, dtype=np.float32)[:, None, None, None, None]  # (8,1,1,1,1)
    th = orient[None, None]  # (1, 1, 15, 1, 1)
    X, Y = x[None, None, None], y[None, None, None]
    h = 0.3 * size * scales  # object height
    base, cx = 0.8 * size, size / 2
    masks, shades = [], []
    # cube: a front face and a side face whose widths follow the orientation, plus a top.
    phi = th + np.deg2rad(20.0)
    front, side = h * np.abs(np.cos(phi)), h * np.abs(np.sin(phi))
    left = cx - (front + side) / 2
    in_front = (X >= left) & (X < left + front) & (Y >= base - h) & (Y < base)
    in_side = (X >= left + front) & (X < left + front + side) & (Y >= base - h) & (Y < base)
    in_top = (X >= left + 0.3 * h * (Y - base + 1.3 * h) / (0.3 * h)) & (X < left + front + side) \
        & (Y >= base - 1.3 * h) & (Y < base - h)
    masks.append(in_front | in_side | in_top)
    shades.append(np.where(in_front, 0.95, np.where(in_side, 0.6, 0.8)))
    # cylinder: body with a highlight that moves with the orientation, elliptic top.
    radius = 0.45 * h
    body = (np.abs(X - cx) < radius) & (Y >= base - h) & (Y < base)
    cap = ((X - cx) / radius) ** 2 + ((Y - (base - h)) / (0.25 * radius)) ** 2 < 1
    across = np.clip((X - cx) / radius, -1, 1)
    masks.append(body | cap)
    shades.append(np.where(cap & ~body | (cap & (Y < base - h)), 0.85,
                           0.45 + 0.55 * np.cos(np.arcsin(across) - 1.2 * th) ** 2))
    # sphere: disc with a highlight that moves with the orientation.
    r = 0.5 * h
    cy = base - r
    d2 = ((X - cx) ** 2 + (Y - cy) ** 2) / r ** 2
    hx, hy = cx + 0.5 * r * np.sin(1.5 * th), cy - 0.4 * r
    masks.append(d2 < 1)
    shades.append(0.35 + 0.65 * np.clip(1 - ((X - hx) ** 2 + (Y - hy) ** 2) / (1.6 * r ** 2), 0, 1))
    # capsule: a horizontal pill whose apparent length follows the orientation.
    rc = 0.3 * h
    half = 0.5 * h * (0.5 + 0.9 * np.abs(np.cos(th + np.deg2rad(25.0))))
    yc = base - rc
    dx = np.maximum(np.abs(X - cx) - half, 0)
    pill = dx ** 2 + (Y - yc) ** 2 < rc ** 2
    masks.append(pill)
    shades.append(0.5 + 0.5 * np.clip(1 - ((Y - yc + 0.4 * rc) / rc) ** 2, 0, 1))

    object_in = np.stack([np.broadcast_to(m, (8, 1, 15, ss, ss))[:, 0] for m in masks], 1)
    object_shade = np.stack([np.broadcast_to(s, (8, 1, 15, ss, ss))[:, 0] for s in shades], 1)
    object_alpha = _coverage(object_in)  # (8, 4, 15, S, S)
    object_shade = _coverage(np.where(object_in, object_shade, 0)) / np.maximum(object_alpha, 1e-6)
    palette = np.asarray([colorsys.hsv_to_rgb(h, 0.85, 0.95) for h in np.linspace(0, 0.9, 10)],
                         np.float32)

    def u8(a):
        return (np.clip(a, 0, 1) * 255).round().astype(np.uint8)

    return {"floor_alpha": u8(floor_alpha), "floor_shade": u8(floor_shade),
            "wall_shade": u8(wall_shade), "object_alpha": u8(object_alpha),
            "object_shade": u8(object_shade), "palette": palette}


class ComposedShapesTable:
    """Image table of the embedded 3dshapes grid: composes images from factor indices.

    Same interface as sequences.ArrayTable (len, image_shape, gather), so the
    FactorGridSequences generator treats it exactly as the real 480,000-image array.
    """

    def __init__(self, layers: dict[str, np.ndarray], device="cpu"):
        self.device = torch.device(device)
        self.layers = {k: torch.from_numpy(np.array(v)).to(self.device) for k, v in layers.items()}
        size = self.layers["floor_alpha"].shape[-1]
        self.image_shape = (3, size, size)
        self.sizes = list(self.layers["object_alpha"].shape[:3])  # scale, shape, orientation
        self.n_hues = self.layers["palette"].shape[0]
        # Floor + wall scenes for every (orientation, floor hue, wall hue): 18 MB of uint8
        # that halve the per-batch work.
        L, pal = self.layers, self.layers["palette"][:, :, None, None]  # (10, 3, 1, 1)
        fa = L["floor_alpha"].float().div(255)[:, None, None, None]  # (15, 1, 1, 1, S, S)
        floor = L["floor_shade"].float().div(255)[:, None, None, None] * pal[None, :, None]
        wall = L["wall_shade"].float().div(255)[:, None, None, None] * pal[None, None, :]
        scenes = torch.lerp(wall, floor, fa)  # (15, 10 floor, 10 wall, 3, S, S)
        self.scenes = scenes.mul_(255).round_().clamp_(0, 255).to(torch.uint8)

    def __len__(self) -> int:
        return self.n_hues ** 3 * int(np.prod(self.sizes))

    def gather(self, flat: torch.Tensor, device: torch.device) -> torch.Tensor:
        """Flat indices (K,) -> uint8 (K, 3, S, S) on device."""
        sizes = [self.n_hues] * 3 + self.sizes
        digits, rest = [], flat.to(self.device)
        for n in reversed(sizes):
            digits.append(rest % n)
            rest = rest // n
        orient, shape, scale, obj, wall, floor = digits  # mixed radix, orientation fastest
        L = self.layers

        def layer(name, *index):  # gather first, then convert: (K, 1, S, S) in [0, 1]
            return L[name][index].unsqueeze(1).float().div_(255.0)

        pal = L["palette"][:, :, None, None] * 255  # (10, 3, 1, 1)
        scene = self.scenes[orient, floor, wall].float()  # (K, 3, S, S) in 0..255
        shaded = layer("object_shade", scale, shape, orient) * pal[obj]
        image = scene.lerp_(shaded, layer("object_alpha", scale, shape, orient))
        return image.round_().clamp_(0, 255).to(torch.uint8).to(device)  # (K, 3, S, S)


# ----------------------------------------------------------------------------- smallNORB
NORB_FACTORS = ["category", "instance", "lighting", "elevation", "azimuth"]
# Per category, 4 toys: instances 0, 1 for training and 2, 3 for testing.
NORB_TOYS = {
    "ellipsoid": [(0.9, 0.5, 0.4), (0.7, 0.45, 0.6), (0.85, 0.35, 0.5), (0.6, 0.5, 0.45)],
    "box": [(0.8, 0.4, 0.3), (0.6, 0.5, 0.45), (0.9, 0.3, 0.4), (0.7, 0.35, 0.5)],
    "cylinder": [(0.35, 0.8, 0.0), (0.45, 0.6, 0.0), (0.3, 0.9, 0.0), (0.4, 0.7, 0.0)],
}


def _intersect(kind: str, dims, origin: np.ndarray, direction: np.ndarray):
    """Orthographic rays (R, 3) against a primitive at the origin -> hit (R,), t, normal (R, 3)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if kind == "ellipsoid":
            radii = np.asarray(dims, np.float32)
            o, d = origin / radii, direction / radii
            a, b, c = (d * d).sum(1), 2 * (o * d).sum(1), (o * o).sum(1) - 1
            disc = b * b - 4 * a * c
            t = (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a)
            hit = disc > 0
            normal = (origin + t[:, None] * direction) / radii ** 2
        elif kind == "box":
            half = np.asarray(dims, np.float32)
            t1, t2 = (-half - origin) / direction, (half - origin) / direction
            near, far = np.minimum(t1, t2), np.maximum(t1, t2)
            t, t_out = near.max(1), far.min(1)
            hit = (t_out >= t) & (t_out > 0)
            axis = near.argmax(1)
            normal = np.zeros_like(origin)
            normal[np.arange(len(t)), axis] = -np.sign(direction[np.arange(len(t)), axis])
        else:  # cylinder along x: radius, half length
            radius, half = dims[0], dims[1]
            oy, oz, dy, dz = origin[:, 1], origin[:, 2], direction[:, 1], direction[:, 2]
            a, b, c = dy * dy + dz * dz, 2 * (oy * dy + oz * dz), oy * oy + oz * oz - radius ** 2
            disc = b * b - 4 * a * c
            t_side = (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a)
            x_side = origin[:, 0] + t_side * direction[:, 0]
            side_ok = (disc > 0) & (np.abs(x_side) <= half)
            t_caps = np.stack([(-half - origin[:, 0]) / direction[:, 0],
                               (half - origin[:, 0]) / direction[:, 0]], 1)
            t_cap = t_caps.min(1)
            p_cap = origin + t_cap[:, None] * direction
            cap_ok = p_cap[:, 1] ** 2 + p_cap[:, 2] ** 2 <= radius ** 2
            t = np.where(side_ok & (~cap_ok | (t_side < t_cap)), t_side, t_cap)
            hit = side_ok | cap_ok
            p = origin + t[:, None] * direction
            use_side = side_ok & (~cap_ok | (t_side < t_cap))
            normal = np.where(use_side[:, None], p * np.asarray([0, 1, 1], np.float32),
                              np.stack([np.sign(p[:, 0]), 0 * t, 0 * t], 1))
        normal = normal / np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-8)
    return hit, t, normal


def norb_grid(split: str, size: int = 96) -> np.ndarray:
    """(3 categories, 2 instances, 6 lightings, 9 elevations, 18 azimuths, S, S) uint8.

    Ray-cast at S/2 and upsampled x2 (bilinear): real small NORB images are soft too.
    """
    out_size, size = size, size // 2
    elev = np.deg2rad(np.arange(30, 75, 5, dtype=np.float32))  # (9,)
    azim = np.deg2rad(np.arange(0, 360, 20, dtype=np.float32))  # (18,)
    e, a = np.meshgrid(elev, azim, indexing="ij")  # (9, 18)
    cam = np.stack([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)], -1).reshape(-1, 3)
    right = np.stack([-np.sin(a), np.cos(a), 0 * a], -1).reshape(-1, 3)
    up = np.cross(cam, right)  # (V, 3)
    span = (np.arange(size, dtype=np.float32) - (size - 1) / 2) / (size / 2) * 1.25
    u, v = np.meshgrid(span, -span)  # (S, S): column -> right, row -> down
    origin = (4 * cam[:, None, None] + u[None, ..., None] * right[:, None, None]
              + v[None, ..., None] * up[:, None, None]).reshape(-1, 3)  # (V*S*S, 3)
    direction = np.repeat(-cam, size * size, axis=0)
    light_az = np.deg2rad(np.arange(6) * 60.0 + 15.0)
    lights = np.stack([np.cos(light_az) * 0.6, np.sin(light_az) * 0.6,
                       np.full(6, 0.8)], -1).astype(np.float32)  # (6, 3)
    lights /= np.linalg.norm(lights, axis=1, keepdims=True)
    gain = np.linspace(0.8, 1.1, 6, dtype=np.float32)
    toys = range(0, 2) if split == "train" else range(2, 4)
    grid = np.zeros((3, 2, 6, 9, 18, out_size, out_size), np.uint8)
    for c, (kind, dims_list) in enumerate(NORB_TOYS.items()):
        for i, toy in enumerate(toys):
            hit, t, normal = _intersect(kind, dims_list[toy], origin, direction)
            point = origin + np.where(hit, t, 0)[:, None] * direction
            # Albedo pattern breaks the symmetries so every azimuth looks different.
            albedo = (np.where(point[:, 0] > 0.25, np.float32(0.55), np.float32(0.9))
                      * (np.float32(0.85) + np.float32(0.15) * np.sign(np.sin(9 * point[:, 2]))))
            lambert = np.clip(normal @ lights.T, 0, None)  # (R, 6)
            shade = albedo[:, None] * (np.float32(0.25) + np.float32(0.75) * lambert) * gain
            image = np.where(hit[:, None], shade, np.float32(0.3) * gain)  # background brightens
            image = np.ascontiguousarray(image.reshape(9 * 18, size * size, 6).transpose(0, 2, 1))
            image = F.interpolate(torch.from_numpy(image).view(9 * 18, 6, size, size),
                                  size=out_size, mode="bilinear", align_corners=False)
            # Values lie in [0, 0.99], so +0.5 and truncation round to the nearest level.
            image = image.mul_(255).add_(0.5).to(torch.uint8).view(9, 18, 6, out_size, out_size)
            grid[c, i] = image.permute(2, 0, 1, 3, 4).numpy()
    return grid
