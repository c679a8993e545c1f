"""Sequence generators: whole batches of (N, T, C, H, W) frames at once (docs/datasets.md).

Every generator owns a CPU torch.Generator seeded by `seed`. All random parameters are
drawn on the CPU (float64), then moved, so every device sees the same sequences; the
images themselves are rendered or gathered on the requested device. state_dict()
holds the RNG state and any shared transition, so a resumed run continues the stream.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

import numpy as np
import torch

from msp.data.readers import DataError
from msp.data.render import WARP_MODES, render_digit_frames, resize_and_pad


def _pair(value, name: str) -> tuple[float, float]:
    """A range option: [lo, hi], or a number r meaning [-r, r] (as the authors accept)."""
    if isinstance(value, (int, float)):
        return (-float(value), float(value))
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"option {name}={value!r}: give a number r or a pair [lo, hi]") from None
    if lo > hi:
        raise ValueError(f"option {name}={value!r}: lo > hi")
    return lo, hi


class SequenceGenerator:
    """Base: RNG, active actions, shared transition, state. Subclasses define
    factor_names, default_active_actions, image_shape, _draw_shared, sample_with_factors."""

    factor_names: list[str] = []
    default_active_actions: list[int] = []
    movable_actions: list[int] = []

    def __init__(self, T: int, device, seed: int, active_actions, shared_transition: bool):
        if int(T) < 1:
            raise ValueError(f"T={T}: a sequence needs at least one frame")
        self.T = int(T)
        self.device = torch.device(device)
        self.seed = int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)
        actions = list(self.default_active_actions if active_actions is None else active_actions)
        bad = [a for a in actions if a not in self.movable_actions]
        if bad:
            raise ValueError(f"active_actions {bad} cannot move; movable factors are "
                             + ", ".join(f"{i}={self.factor_names[i]}" for i in self.movable_actions))
        self.active_actions = sorted(set(int(a) for a in actions))
        self.shared_transition = bool(shared_transition)
        self._shared: dict[str, torch.Tensor] | None = None
        if self.shared_transition:
            self.redraw_shared_transition()

    # -- randomness (CPU, float64) ------------------------------------------------
    def _uniform(self, shape, lo: float, hi: float) -> torch.Tensor:
        u = torch.rand(shape, generator=self.generator, dtype=torch.float64)
        return lo + (hi - lo) * u

    def _randint(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        """Integers uniform in [low, high) elementwise (high > low), int64."""
        u = torch.rand(low.shape, generator=self.generator, dtype=torch.float64)
        span = (high - low).to(torch.float64)
        return low + torch.minimum(torch.floor(u * span), span - 1).to(torch.int64)

    # -- public API -----------------------------------------------------------------
    @property
    def n_factors(self) -> int:
        return len(self.factor_names)

    def redraw_shared_transition(self) -> None:
        """Draw the velocities every sequence shares (shared_transition=True)."""
        if not self.shared_transition:
            raise RuntimeError("redraw_shared_transition() needs shared_transition=True")
        self._shared = self._draw_shared()

    def sample(self, batch_size: int) -> torch.Tensor:
        """(N, T, C, H, W) float32 in [0, 1] on the generator's device."""
        return self.sample_with_factors(batch_size)[0]

    def state_dict(self) -> dict:
        return {"rng": self.generator.get_state(), "seed": self.seed,
                "shared": None if self._shared is None else dict(self._shared)}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["rng"])
        self._shared = None if state.get("shared") is None else dict(state["shared"])
        if self.shared_transition and self._shared is None:
            raise ValueError("state has no shared transition but shared_transition=True")

    def _draw_shared(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def sample_with_factors(self, batch_size: int) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError


def gather_rows(array: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """array[idx] read in increasing index order (kind to memory-mapped files)."""
    order = np.argsort(idx, kind="stable")
    rows = np.empty((len(idx),) + array.shape[1:], array.dtype)
    rows[order] = array[idx[order]]
    return rows


# ----------------------------------------------------------------------------- MNIST
@dataclass
class MnistOptions:
    """Options of Sequential MNIST and its variants (docs/datasets.md, 'Sequential MNIST')."""
    digits: list[int] | None = field(default_factory=lambda: [4])  # None: every digit
    backgrounds: bool = False
    max_T: int = 9
    range_a: tuple[float, float] = (-0.5, 0.5)  # angular velocity / pi
    range_h: tuple[float, float] = (-0.5, 0.5)  # hue velocity / 0.5
    accl_a: tuple[float, float] = (0.0, 0.0)  # angular acceleration / pi
    accl_h: tuple[float, float] = (0.0, 0.0)  # hue acceleration / 0.5
    max_pos: tuple[float, float] = (-10.0, 10.0)  # start and end positions, pixels
    max_trans_accl: tuple[float, float] = (0.0, 0.0)  # translation acceleration, pixels
    active_actions: list[int] | None = None
    shared_transition: bool = False
    force_moving: bool = False  # continuous velocities: accepted, has no effect
    warp_mode: str = "authors"  # "authors" (cv2 homography of get_RTmat) or "exact"


# The authors' argument names, accepted as aliases.
MNIST_ALIASES = {"max_angle_velocity_ratio": "range_a", "max_color_velocity_ratio": "range_h",
                 "max_angle_accl_ratio": "accl_a", "max_color_accl_ratio": "accl_h",
                 "backgrnd": "backgrounds"}


def mnist_options(options: dict) -> MnistOptions:
    known = {f.name for f in fields(MnistOptions)}
    values = {}
    for key, value in options.items():
        key = MNIST_ALIASES.get(key, key)
        if key not in known:
            raise ValueError(f"unknown Sequential-MNIST option {key!r}; known: {sorted(known)}")
        values[key] = value
    opts = MnistOptions(**values)
    for name in ("range_a", "range_h", "accl_a", "accl_h", "max_pos", "max_trans_accl"):
        setattr(opts, name, _pair(getattr(opts, name), name))
    if opts.warp_mode not in WARP_MODES:
        raise ValueError(f"warp_mode={opts.warp_mode!r}: use one of {WARP_MODES}")
    if int(opts.max_T) < 2:
        raise ValueError(f"max_T={opts.max_T}: must be >= 2 (velocity = (p1 - p0) / (max_T - 1))")
    return opts


class SequentialMNIST(SequenceGenerator):
    """Rotating, colour-cycling, translating digits (actions 0 rotation, 1 hue, 2 translation).

    images (M, 28, 28) uint8 and labels (M,) of one split; background_images (K, 3, 32, 32)
    (uint8 or float in [0, 1]) or None. As in the authors' loader, the background of the
    k-th selected image (after the digit filter) is backgrounds[k].
    """

    factor_names = ["rotation", "hue", "translation"]
    default_active_actions = [0, 1, 2]
    movable_actions = [0, 1, 2]

    def __init__(self, images: np.ndarray, labels: np.ndarray,
                 background_images: np.ndarray | None, T: int = 3, device="cpu", seed: int = 0,
                 **options):
        self.opts = mnist_options(options)
        labels = np.asarray(labels)
        if self.opts.digits is None:
            selected = np.arange(len(labels))
        else:
            selected = np.flatnonzero(np.isin(labels, np.asarray(self.opts.digits)))
        if len(selected) == 0:
            raise DataError(f"no image has a label in digits={self.opts.digits}")
        device = torch.device(device)
        # Resize + pad once for the whole selection (it does not depend on the sequence).
        digits = torch.from_numpy(np.ascontiguousarray(images[selected]))
        self.sources = resize_and_pad(digits).to(device)  # (M, 1, 32, 32) in 0..255
        self.backgrounds = None
        if self.opts.backgrounds:
            bg = background_images
            if bg is None:
                raise DataError("backgrounds=True but this dataset has no MNIST-bg backgrounds "
                                "(use mnist_bg / mnist_bg_full)")
            if len(bg) < len(selected) or tuple(bg.shape[1:]) != (3, 32, 32):
                raise DataError(f"backgrounds {tuple(bg.shape)}: need at least "
                                f"{len(selected)} items of shape (3, 32, 32)")
            self.backgrounds = bg
        self.n_images = len(selected)
        self.image_shape = (3, 32, 32)
        super().__init__(T, device, seed, self.opts.active_actions, self.opts.shared_transition)

    def _draw_velocities(self, n: int, pos0: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Velocities (and accelerations) of n sequences; the translation runs from pos0 (drawn
        here if not given) to a uniform end point p1 at t = max_T - 1 (docs/datasets.md)."""
        o = self.opts
        pos0 = self._uniform((n, 2), *o.max_pos) if pos0 is None else pos0
        pos1 = self._uniform((n, 2), *o.max_pos)
        return {"v_angle": math.pi * self._uniform((n,), *o.range_a),
                "a_angle": math.pi * self._uniform((n,), *o.accl_a),
                "v_hue": 0.5 * self._uniform((n,), *o.range_h),
                "a_hue": 0.5 * self._uniform((n,), *o.accl_h),
                "v_pos": (pos1 - pos0) / (o.max_T - 1),
                "a_pos": self._uniform((n, 2), *o.max_trans_accl)}

    def _draw_shared(self):
        return {k: v[0] for k, v in self._draw_velocities(1).items()}

    def sample_with_factors(self, batch_size: int):
        n, o = int(batch_size), self.opts
        index = torch.randint(self.n_images, (n,), generator=self.generator)
        angle0 = self._uniform((n,), 0.0, 2 * math.pi)
        hue0 = self._uniform((n,), 0.0, 1.0)
        pos0 = self._uniform((n, 2), *o.max_pos)
        if self._shared is not None:  # one velocity for all, from its own p0 -> p1 (as the authors')
            vel = {k: v.expand((n,) + v.shape) for k, v in self._shared.items()}
        else:  # each sequence moves from its own start pos0 to its end point p1
            vel = self._draw_velocities(n, pos0)
        t = torch.arange(self.T, dtype=torch.float64)  # (T,)
        t2 = 0.5 * t ** 2
        active = self.active_actions
        zero = torch.zeros(self.T, dtype=torch.float64)
        angle = angle0[:, None] + (vel["v_angle"][:, None] * t + vel["a_angle"][:, None] * t2
                                   if 0 in active else zero)  # (N, T)
        hue = torch.remainder(hue0[:, None] + (vel["v_hue"][:, None] * t + vel["a_hue"][:, None] * t2
                                               if 1 in active else zero), 1.0)  # (N, T)
        pos = pos0[:, None, :] + (vel["v_pos"][:, None, :] * t[:, None]
                                  + vel["a_pos"][:, None, :] * t2[:, None]
                                  if 2 in active else zero[:, None])  # (N, T, 2)
        sources = self.sources[index.to(self.sources.device)]  # (N, 1, S, S)
        sources = sources.repeat_interleave(self.T, dim=0)  # (N*T, 1, S, S)
        backgrounds = None
        if self.backgrounds is not None:
            bg = torch.from_numpy(gather_rows(self.backgrounds, index.numpy())).to(self.device)
            bg = bg.float() / 255.0 if bg.dtype == torch.uint8 else bg.float()
            backgrounds = bg.repeat_interleave(self.T, dim=0)
        frames = render_digit_frames(sources, angle.reshape(-1), hue.reshape(-1),
                                     pos.reshape(-1, 2), backgrounds, o.warp_mode)
        xs = frames.view(n, self.T, *self.image_shape)
        info = {"index": index, "angle": angle, "hue": hue, "position": pos,
                **{k: v.clone() for k, v in vel.items()}}
        return xs, info


# ----------------------------------------------------------------------------- factor grids
class ArrayTable:
    """Images of a factor grid stored flat: (M, H, W) grey or (M, H, W, C) uint8 (memmap ok)."""

    def __init__(self, images: np.ndarray):
        if images.dtype != np.uint8 or images.ndim not in (3, 4):
            raise DataError(f"image table {images.shape} {images.dtype}: expected uint8 "
                            "(M, H, W) or (M, H, W, C)")
        self.images = images
        h, w = images.shape[1:3]
        self.image_shape = (1 if images.ndim == 3 else images.shape[3], h, w)

    def __len__(self) -> int:
        return self.images.shape[0]

    def gather(self, flat: torch.Tensor, device: torch.device) -> torch.Tensor:
        """Flat indices (K,) -> uint8 (K, C, H, W) on device; gathered on the CPU
        (memory-mapped tables stay on disk), converted to float on the device later."""
        out = torch.from_numpy(gather_rows(self.images, flat.numpy())).to(device)
        return out.unsqueeze(1) if out.dim() == 3 else out.permute(0, 3, 1, 2)


class FactorGridSequences(SequenceGenerator):
    """Sequences on a full product of discrete factors (3DShapes, SmallNORB).

    Per moving factor with n values: v = randint(lo, n // T + 1), lo = 1 if force_moving,
    negated with probability 1/2; start p uniform among the values that keep p + v t in
    [0, n) for t < T. Inactive factors have v = 0; static factors (shape, or category /
    instance / lighting) take a value uniformly from their allowed `choices`.
    """

    def __init__(self, table, factor_names: list[str], factor_sizes: list[int],
                 movable: list[int], default_active: list[int], choices: dict[int, list[int]],
                 T: int = 3, max_T: int | None = None, device="cpu", seed: int = 0,
                 active_actions=None, shared_transition: bool = False, force_moving: bool = False):
        self.factor_names = list(factor_names)
        self.movable_actions = list(movable)
        self.default_active_actions = list(default_active)
        self.factor_sizes = torch.tensor(factor_sizes, dtype=torch.int64)
        if len(table) != int(self.factor_sizes.prod()):
            raise DataError(f"image table has {len(table)} images, the factor grid "
                            f"{factor_sizes} needs {int(self.factor_sizes.prod())}")
        if max_T is not None and T > max_T:
            raise ValueError(f"T={T} > {max_T}: the paper's velocity scheme for this "
                             f"dataset supports sequences of at most {max_T} frames")
        self.force_moving = bool(force_moving)
        self.table = table
        self.image_shape = table.image_shape
        self.choices = {int(k): torch.as_tensor(list(v), dtype=torch.int64) for k, v in choices.items()}
        for f, values in self.choices.items():
            if len(values) == 0 or values.min() < 0 or values.max() >= factor_sizes[f]:
                raise ValueError(f"allowed values of {factor_names[f]} {values.tolist()} "
                                 f"outside 0..{factor_sizes[f] - 1}")
        strides = torch.ones(len(factor_sizes), dtype=torch.int64)
        for f in range(len(factor_sizes) - 2, -1, -1):
            strides[f] = strides[f + 1] * factor_sizes[f + 1]
        self.strides = strides  # mixed radix, last factor fastest
        super().__init__(T, device, seed, active_actions, shared_transition)
        if self.force_moving:
            slow = [self.factor_names[f] for f in self.active_actions
                    if factor_sizes[f] // self.T < 1]
            if slow:
                raise ValueError(f"force_moving with T={self.T}: factors {slow} have fewer "
                                 "than T values, so they cannot move every frame")

    def _draw_velocity(self, n: int) -> torch.Tensor:
        """(n, F) signed integer velocities for every factor (the authors' gen_v)."""
        sizes = self.factor_sizes.expand(n, -1)
        low = torch.full_like(sizes, 1 if self.force_moving else 0)
        speed = self._randint(low, sizes // self.T + 1)
        flip = torch.rand(sizes.shape, generator=self.generator, dtype=torch.float64) > 0.5
        return torch.where(flip, -speed, speed)

    def _draw_shared(self):
        return {"velocity": self._draw_velocity(1)[0]}

    def sample_with_factors(self, batch_size: int):
        n, T = int(batch_size), self.T
        if self._shared is not None:
            velocity = self._shared["velocity"].expand(n, -1).clone()
        else:
            velocity = self._draw_velocity(n)  # (N, F)
        moving = torch.zeros(self.n_factors, dtype=torch.bool)
        moving[self.active_actions] = True
        velocity = torch.where(moving, velocity, torch.zeros_like(velocity))
        reach = velocity.abs() * (T - 1)
        sizes = self.factor_sizes.expand(n, -1)
        low = torch.where(velocity < 0, reach, torch.zeros_like(reach))
        high = torch.where(velocity < 0, sizes, sizes - reach)
        start = self._randint(low, high)  # (N, F)
        for f, values in self.choices.items():
            pick = torch.randint(len(values), (n,), generator=self.generator)
            start[:, f] = values[pick]
            velocity[:, f] = 0
        t = torch.arange(T, dtype=torch.int64)
        factors = start[:, None, :] + velocity[:, None, :] * t[None, :, None]  # (N, T, F)
        flat = (factors * self.strides).sum(-1)  # (N, T)
        images = self.table.gather(flat.reshape(-1), self.device)  # (N*T, C, H, W) uint8
        xs = images.to(torch.float32).div_(255.0).view(n, T, *self.image_shape)
        return xs, {"factors": factors, "velocity": velocity, "start": start, "flat_index": flat}
