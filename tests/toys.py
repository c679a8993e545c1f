"""Shared test helpers: small planted-dynamics sequence sources (no dataset needed) and
tiny run and model configs."""

import math

import torch
import torch.nn.functional as F


class RotatingBlobs:
    """Sequences of a few fixed blob images rotating at a constant per-sequence speed.

    sample(N) -> (N, T, C, S, S) in [0, 1]; the same seed gives the same stream, and
    state_dict()/load_state_dict() continue it exactly (what the trainer checkpoints).
    """

    def __init__(self, T=3, size=16, channels=3, n_images=8, max_speed=0.6, seed=0):
        self.T, self.size, self.max_speed = T, size, max_speed
        self.image_shape = (channels, size, size)
        g = torch.Generator().manual_seed(1234)
        yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
        images = []
        for _ in range(n_images):
            img = torch.zeros(channels, size, size)
            for _ in range(3):
                cx, cy = (torch.rand(2, generator=g) - 0.5) * 1.2
                colour = torch.rand(channels, 1, 1, generator=g)
                img += colour * torch.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 0.05)
            images.append(img.clamp(0, 1))
        self.images = torch.stack(images)
        self.generator = torch.Generator().manual_seed(seed)

    def sample(self, batch_size):
        g = self.generator
        idx = torch.randint(len(self.images), (batch_size,), generator=g)
        angle0 = torch.rand(batch_size, generator=g) * 2 * math.pi
        speed = (torch.rand(batch_size, generator=g) * 2 - 1) * self.max_speed
        t = torch.arange(self.T, dtype=torch.float32)
        theta = (angle0[:, None] + speed[:, None] * t).flatten()  # (N T,)
        cos, sin, zero = theta.cos(), theta.sin(), torch.zeros_like(theta)
        affine = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
        src = self.images[idx].repeat_interleave(self.T, dim=0)
        grid = F.affine_grid(affine, src.shape, align_corners=False)
        frames = F.grid_sample(src, grid, align_corners=False)
        return frames.view(batch_size, self.T, *self.image_shape)

    def state_dict(self):
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state):
        self.generator.set_state(state["generator"])


class FailingAfter:
    """Wraps a source and raises (like a kill) on the n-th call to sample()."""

    def __init__(self, source, n_calls, exc=KeyboardInterrupt):
        self.source, self.n_calls, self.calls, self.exc = source, n_calls, 0, exc
        self.image_shape = source.image_shape

    def sample(self, batch_size):
        self.calls += 1
        if self.calls == self.n_calls:
            raise self.exc("simulated kill")
        return self.source.sample(batch_size)

    def state_dict(self):
        return self.source.state_dict()

    def load_state_dict(self, state):
        self.source.load_state_dict(state)


class NaNAfter(FailingAfter):
    """Returns NaN frames from the n-th call on."""

    def sample(self, batch_size):
        self.calls += 1
        xs = self.source.sample(batch_size)
        return xs * float("nan") if self.calls >= self.n_calls else xs


def toy_config(iterations=12, **train_overrides):
    return {
        "dataset": {"name": "mnist", "source": "embedded"},
        "model": {"name": "lstsq", "k": 0.25, "dim_m": 16, "dim_a": 4, "n_blocks": 2},
        "train": {"iterations": iterations, "batch_size": 8, "lr": 1e-3, "lr_decay_iter": iterations // 2,
                  "checkpoint_every": 4, "log_every": 2, "seed": 3, "device": "cpu", **train_overrides},
    }


SMALL = dict(k=0.25, dim_m=8, dim_a=4)


def small_config(name, n_blocks):
    cfg = {"name": name, "n_blocks": n_blocks, **SMALL}
    if name == "holstsq":
        cfg.update(T_cond=5, T_pred=2)
    if name == "lstsq_multi":
        cfg["K"] = 2
    if name == "neuralM_latentpred":
        cfg.update(loss_reconst_coeff=0.1, loss_latent_coeff=0.01)
    if name == "simclr":
        cfg.update(dim_mlp=16, dim_head=8)
    return cfg
