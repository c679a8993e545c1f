"""Encoder and decoder networks of MSP (docs/method.md, 'Networks').

Every layer is built with explicit shapes from the image size, so the parameter count is
known at construction and a state dict loads without a dummy forward pass.
Widths: base width w0 = int(32 k); encoder block i maps w0 2^i -> w0 2^(i+1); decoder
block i maps w0 2^(i+1) -> w0 2^i; hidden width = output width.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

POSITIONAL_EMBEDDING_DIM = 64


def standardize_weight(weight: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Weight standardization per output channel.

    weight: (out, in, *kernel) -> same shape, zero mean and unit (unbiased) std over
    everything but the output channel; eps is added to the std, as the authors do.
    """
    flat = weight.flatten(1)  # (out, in * prod(kernel))
    flat = flat - flat.mean(dim=1, keepdim=True)
    flat = flat / (flat.std(dim=1, keepdim=True) + eps)
    return flat.view_as(weight)


def pooled_kernel(weight: torch.Tensor) -> torch.Tensor:
    """(out, in, k, k) -> (out, in, k+1, k+1): the kernel of conv followed by 2x2 average pooling.

    avg_pool2d(conv2d(x, w, padding=p), 2) == conv2d(x, pooled_kernel(w), stride=2, padding=p)
    for even input sizes.
    """
    return 0.25 * F.pad(weight, (0, 1, 0, 1)).add(F.pad(weight, (1, 0, 0, 1))).add(
        F.pad(weight, (0, 1, 1, 0))).add(F.pad(weight, (1, 0, 1, 0)))


# Nearest 2x upsampling then a 3-tap filter = a 2-tap filter per output phase (rows or columns):
# phase 0 reads positions (i-1, i) with taps (k0, k1 + k2); phase 1 reads (i, i+1) with (k0 + k1, k2).
_PHASE_TAPS = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]], [[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])


def upsampled_conv3x3(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """conv2d(upsample_nearest_2x(x), weight, padding=1) computed at the low resolution.

    x: (B, C, H, W), weight: (O, C, 3, 3) -> (B, O, 2H, 2W); 16 instead of 36 taps per input pixel.
    """
    B, _, H, W = x.shape
    taps = _PHASE_TAPS.to(weight)  # (2 phases, 2 taps, 3)
    xp = F.pad(x, (1, 1, 1, 1))
    rows = []
    for py in range(2):
        cols = []
        for px in range(2):
            k = torch.einsum("ai,ocij,bj->ocab", taps[py], weight, taps[px])  # (O, C, 2, 2)
            cols.append(F.conv2d(xp[:, :, py : py + H + 1, px : px + W + 1], k))  # (B, O, H, W)
        rows.append(torch.stack(cols, dim=-1))  # (B, O, H, W, 2)
    out = torch.stack(rows, dim=3)  # (B, O, H, 2, W, 2): row phase before column phase
    return out.reshape(B, weight.shape[0], 2 * H, 2 * W)


def set_fused_kernels(module: nn.Module, enabled: bool):
    """Switch every residual block of `module` between the faithful and the fused forward."""
    for block in module.modules():
        if isinstance(block, ResidualBlock):
            block.fused = enabled


class StandardizedConv2d(nn.Conv2d):
    """A Conv2d whose weight is standardized on every forward pass."""

    def forward(self, x):
        return F.conv2d(x, standardize_weight(self.weight), self.bias, self.stride, self.padding)


class StandardizedLinear(nn.Linear):
    """A Linear (a 1x1 Conv1d) whose weight is standardized on every forward pass."""

    def forward(self, x):
        return F.linear(x, standardize_weight(self.weight), self.bias)


def sinusoidal_embedding_2d(dim: int, height: int, width: int) -> torch.Tensor:
    """The standard 2-D sin/cos positional encoding -> (dim, height, width).

    The first dim/2 channels encode the x (width) position, the last dim/2 the y
    position; within each half, even channels are sines and odd channels cosines of
    position * 10000^(-2i/(dim/2)).
    """
    if dim % 4:
        raise ValueError(f"positional embedding dim must be a multiple of 4, got {dim}")
    half = dim // 2
    inv_freq = torch.exp(torch.arange(0, half, 2, dtype=torch.float64) * (-math.log(10000.0) / half))
    phase_x = torch.arange(width, dtype=torch.float64)[:, None] * inv_freq  # (w, half/2)
    phase_y = torch.arange(height, dtype=torch.float64)[:, None] * inv_freq  # (h, half/2)
    emb = torch.zeros(dim, height, width, dtype=torch.float64)
    emb[0:half:2] = phase_x.sin().T[:, None, :]
    emb[1:half:2] = phase_x.cos().T[:, None, :]
    emb[half::2] = phase_y.sin().T[:, :, None]
    emb[half + 1 :: 2] = phase_y.cos().T[:, :, None]
    return emb.float()


class ResidualBlock(nn.Module):
    """Pre-activation residual block with weight-standardized 3x3 convolutions.

    residual: GN -> ReLU -> [up x2] -> [concat pos-emb] -> conv -> GN -> ReLU -> conv -> [avgpool]
    shortcut: [up x2] -> [concat pos-emb] -> 1x1 conv -> [avgpool]
    `embedding_size` (h, w) adds a learnable positional embedding of that map size,
    initialised with sin/cos values (decoder blocks only).
    """

    def __init__(self, in_channels, out_channels, resample=None, kernel_size=3, embedding_size=None):
        super().__init__()
        if resample not in (None, "up", "down"):
            raise ValueError(f"resample must be None, 'up' or 'down', got {resample!r}")
        self.resample = resample
        self.fused = False  # set by set_fused_kernels(); same parameters either way
        hidden = out_channels
        conv_in = in_channels
        if embedding_size is not None:
            self.pos_emb = nn.Parameter(sinusoidal_embedding_2d(POSITIONAL_EMBEDDING_DIM, *embedding_size))
            conv_in += POSITIONAL_EMBEDDING_DIM
        else:
            self.pos_emb = None
        padding = (kernel_size - 1) // 2
        self.norm1 = nn.GroupNorm(min(32, in_channels), in_channels)
        self.conv1 = StandardizedConv2d(conv_in, hidden, kernel_size, padding=padding)
        self.norm2 = nn.GroupNorm(min(32, hidden), hidden)
        self.conv2 = StandardizedConv2d(hidden, out_channels, kernel_size, padding=padding)
        self.shortcut = nn.Conv2d(conv_in, out_channels, 1)
        nn.init.xavier_uniform_(self.conv1.weight, math.sqrt(2))
        nn.init.xavier_uniform_(self.conv2.weight, math.sqrt(2))
        nn.init.xavier_uniform_(self.shortcut.weight)

    def _upsample_and_embed(self, x):
        if self.resample == "up":
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        if self.pos_emb is not None:
            x = torch.cat([x, self.pos_emb.to(x.dtype).expand(x.shape[0], -1, -1, -1)], dim=1)
        return x

    def forward(self, x):
        if self.fused:
            return self._forward_fused(x)
        h = self._upsample_and_embed(F.relu(self.norm1(x)))
        h = self.conv2(F.relu(self.norm2(self.conv1(h))))
        s = self.shortcut(self._upsample_and_embed(x))
        if self.resample == "down":
            h, s = F.avg_pool2d(h, 2), F.avg_pool2d(s, 2)
        return h + s

    def _forward_fused(self, x):
        """The same function with fewer FLOPs, exact up to float rounding:
        - 2x2 average pooling after a 3x3 conv is one 4x4 conv of stride 2 (kernel (x) box);
        - a 3x3 conv after nearest 2x upsampling is four 2x2 convs at the low resolution;
        - pooling commutes with the 1x1 shortcut, nearest upsampling too;
        - the positional embedding is input-independent: its share of each conv is
          computed once per call and broadcast over the batch."""
        n_in = x.shape[1]
        w1 = standardize_weight(self.conv1.weight)
        w2 = standardize_weight(self.conv2.weight)
        h = F.relu(self.norm1(x))
        if self.resample == "up" and self.conv1.kernel_size == (3, 3):
            h = upsampled_conv3x3(h, w1[:, :n_in])
        else:
            if self.resample == "up":
                h = F.interpolate(h, scale_factor=2, mode="nearest")
            h = F.conv2d(h, w1[:, :n_in], None, padding=self.conv1.padding)
        if self.pos_emb is not None:
            pe = self.pos_emb.to(h.dtype)[None]  # (1, 64, h, w)
            h = h + F.conv2d(pe, w1[:, n_in:], self.conv1.bias, padding=self.conv1.padding)
        elif self.conv1.bias is not None:
            h = h + self.conv1.bias[:, None, None]
        h = F.relu(self.norm2(h))
        ws = self.shortcut.weight
        if self.resample == "down":
            h = F.conv2d(h, pooled_kernel(w2), self.conv2.bias, stride=2, padding=self.conv2.padding[0])
            s = F.conv2d(F.avg_pool2d(x, 2), ws[:, :n_in], self.shortcut.bias)
        else:
            h = F.conv2d(h, w2, self.conv2.bias, padding=self.conv2.padding)
            s = F.conv2d(x, ws[:, :n_in], self.shortcut.bias)
            if self.resample == "up":
                s = F.interpolate(s, scale_factor=2, mode="nearest")
            if self.pos_emb is not None:
                s = s + F.conv2d(pe, ws[:, n_in:])
        return h + s


def base_width(k: float) -> int:
    return int(32 * k)


class Encoder(nn.Module):
    """x: (B, C, S, S) -> (B, latent_dim); latent_dim = 0 returns the flattened features."""

    def __init__(self, in_channels, image_size, latent_dim, k=1.0, n_blocks=3, kernel_size=3):
        super().__init__()
        if image_size % 2**n_blocks:
            raise ValueError(f"image size {image_size} is not divisible by 2^n_blocks = {2**n_blocks}")
        w0 = base_width(k)
        widths = [w0 * 2**i for i in range(n_blocks + 1)]
        self.stem = nn.Conv2d(in_channels, w0, 3, padding=1)
        self.blocks = nn.Sequential(
            *[ResidualBlock(widths[i], widths[i + 1], "down", kernel_size) for i in range(n_blocks)]
        )
        self.norm = nn.GroupNorm(min(32, widths[-1]), widths[-1])
        self.feature_dim = widths[-1] * (image_size // 2**n_blocks) ** 2
        self.linear = nn.Linear(self.feature_dim, latent_dim) if latent_dim > 0 else None

    def forward(self, x):
        h = F.relu(self.norm(self.blocks(self.stem(x))))
        h = h.flatten(1)  # (B, C_last * s * s)
        return self.linear(h) if self.linear is not None else h


class Decoder(nn.Module):
    """z: (B, latent_dim) -> x: (B, out_channels, S, S) with S = bottom_width * 2^n_blocks."""

    def __init__(self, out_channels, latent_dim, k=1.0, n_blocks=3, bottom_width=4, kernel_size=3):
        super().__init__()
        w0 = base_width(k)
        self.bottom_width = bottom_width
        self.linear = nn.Linear(latent_dim, w0 * 2**n_blocks)
        blocks = []
        for i in reversed(range(n_blocks)):
            side = bottom_width * 2 ** (n_blocks - i)  # map size after this block's upsampling
            blocks.append(ResidualBlock(w0 * 2 ** (i + 1), w0 * 2**i, "up", kernel_size, (side, side)))
        self.blocks = nn.Sequential(*blocks)
        self.norm = nn.GroupNorm(min(32, w0), w0)
        self.head = nn.Conv2d(w0, out_channels, 3, padding=1)

    def forward(self, z):
        h = self.linear(z)
        h = h[:, :, None, None].expand(-1, -1, self.bottom_width, self.bottom_width)  # tiled bottom map
        h = self.blocks(h)
        return torch.sigmoid(self.head(F.relu(self.norm(h))))


class PointwiseResidualBlock(nn.Module):
    """The 1x1-Conv1d residual block of the neural transition, on (B, L, C) tensors.

    residual: LN -> ReLU -> WS-linear -> LN -> ReLU -> WS-linear; shortcut: linear.
    A 1x1 Conv1d over a length-L signal is a Linear over channels at each position.
    """

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.norm1 = nn.LayerNorm(in_channels)
        self.fc1 = StandardizedLinear(in_channels, out_channels)
        self.norm2 = nn.LayerNorm(out_channels)
        self.fc2 = StandardizedLinear(out_channels, out_channels)
        self.shortcut = nn.Linear(in_channels, out_channels)
        nn.init.xavier_uniform_(self.fc1.weight, math.sqrt(2))
        nn.init.xavier_uniform_(self.fc2.weight, math.sqrt(2))
        nn.init.xavier_uniform_(self.shortcut.weight)

    def forward(self, x):
        h = self.fc2(F.relu(self.norm2(self.fc1(F.relu(self.norm1(x))))))
        return h + self.shortcut(x)


class PointwiseEncoder(nn.Module):
    """(B, L, in_channels) -> (B, L, out_channels): linear, 2 residual blocks, LN, ReLU, linear."""

    def __init__(self, in_channels, out_channels, hidden=128):
        super().__init__()
        self.stem = nn.Linear(in_channels, hidden)
        self.blocks = nn.Sequential(PointwiseResidualBlock(hidden, hidden), PointwiseResidualBlock(hidden, hidden))
        self.norm = nn.LayerNorm(hidden)
        self.head = nn.Linear(hidden, out_channels)

    def forward(self, x):
        return self.head(F.relu(self.norm(self.blocks(self.stem(x)))))
