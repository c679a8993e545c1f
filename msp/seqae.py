"""The sequence auto-encoder shared by every model: encoder/decoder pair, latent layout
(N, T, dim_m, dim_a), the optional change of basis U and fixed coordinates (SBD)."""

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn as nn

from msp import dynamics
from msp.networks import Decoder, Encoder


@dataclass
class SeqAEConfig:
    """Shared by every sequence auto-encoder: latent (dim_m, dim_a) and network shape."""

    T_cond: int = 2
    T_pred: int = 1
    dim_m: int = 256
    dim_a: int = 16
    k: float = 1.0  # width multiplier: base width int(32 k)
    n_blocks: int = 3
    bottom_width: int | None = None  # None: image side / 2^n_blocks
    kernel_size: int = 3
    alignment: bool = False  # loss_bd diagnostic on the batch mean of |M|^T|M|


def prediction_error(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(N, T, C, H, W) pair -> squared error summed over C, H, W, averaged over N and T (float32)."""
    return ((pred.float() - target.float()) ** 2).sum(dim=(2, 3, 4)).mean()


class SeqAE(nn.Module):
    """Encoder/decoder pair with the latent layout (N, T, dim_m, dim_a) and an optional basis U."""

    Config = SeqAEConfig
    name = "seqae"
    has_transition = True
    has_decoder = True
    encoder_to_latent = True  # False: the encoder returns its flattened features (SimCLR)

    def __init__(self, cfg: SeqAEConfig, image_shape: tuple[int, int, int]):
        super().__init__()
        C, S, S2 = image_shape
        if S != S2:
            raise ValueError(f"images must be square, got {image_shape}")
        if cfg.bottom_width is None:
            cfg = dataclasses.replace(cfg, bottom_width=S // 2**cfg.n_blocks)
        if cfg.bottom_width * 2**cfg.n_blocks != S:
            raise ValueError(
                f"bottom_width {cfg.bottom_width} x 2^n_blocks {2 ** cfg.n_blocks} != image side {S}; "
                "fix model.bottom_width or model.n_blocks"
            )
        self.cfg, self.image_shape = cfg, tuple(image_shape)
        self.T_cond, self.T_pred, self.dim_m, self.dim_a = cfg.T_cond, cfg.T_pred, cfg.dim_m, cfg.dim_a
        latent = cfg.dim_m * cfg.dim_a
        self.encoder = Encoder(C, S, latent if self.encoder_to_latent else 0, cfg.k, cfg.n_blocks, cfg.kernel_size)
        if self.has_decoder:
            self.decoder = Decoder(C, latent, cfg.k, cfg.n_blocks, cfg.bottom_width, cfg.kernel_size)
        self.register_buffer("change_of_basis", None)
        self.fix_indices = None
        self.memory_format = torch.contiguous_format  # channels_last on GPU (msp.performance)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        U = state_dict.get(prefix + "change_of_basis")
        if U is not None and self.change_of_basis is None:
            self.change_of_basis = torch.empty_like(U)  # materialise the buffer so a saved U loads
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # -- change of basis and fixed coordinates (SBD) --
    def set_change_of_basis(self, U: torch.Tensor | None):
        """U: (a, a): latents become H U on encode and H U^-1 before decode."""
        self.change_of_basis = None if U is None else U.detach().to(self.encoder.stem.weight)

    def set_fix_indices(self, indices: list[int] | None):
        """Solve the transition only on these latent columns (identity on the rest); None: all."""
        self.fix_indices = None if indices is None else sorted(int(i) for i in indices)

    # -- latents --
    def encode(self, xs: torch.Tensor) -> torch.Tensor:
        """xs: (N, T, C, H, W) -> H: (N, T, m, a)."""
        N, T = xs.shape[:2]
        x = xs.flatten(0, 1).contiguous(memory_format=self.memory_format)  # (N T, C, H, W)
        H = self.encoder(x).view(N, T, self.dim_m, self.dim_a)
        if self.change_of_basis is not None:
            with dynamics.float32_math(H.device.type):
                H = dynamics.at_least_float32(H) @ self.change_of_basis.float()  # a latent product: float32
        return H

    def decode(self, H: torch.Tensor) -> torch.Tensor:
        """H: (N, T, m, a) -> xs: (N, T, C, H, W)."""
        N, T = H.shape[:2]
        if self.change_of_basis is not None:
            U = self.change_of_basis.float()
            H = torch.linalg.solve(U, H.float(), left=False).to(H.dtype)  # X U = H: X = H U^-1
        x = self.decoder(H.reshape(N * T, self.dim_m * self.dim_a))
        return x.reshape(N, T, *x.shape[1:])

    # -- prediction --
    def predict(self, xs_cond: torch.Tensor, n_rolls: int) -> torch.Tensor:
        """xs_cond: (N, Tc, C, H, W) -> predicted future frames (N, n_rolls, C, H, W)."""
        return self.decode(self.rollout(self.infer_transition(xs_cond), n_rolls))

    def infer_transition(self, xs_cond: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def rollout(self, state: dict[str, torch.Tensor], n_rolls: int) -> torch.Tensor:
        """First-order roll-out of the last conditioning latent: (N, n_rolls, m, a), float32."""
        return dynamics.rollout_first_order(state["H"][:, -1], state["M"], n_rolls)
