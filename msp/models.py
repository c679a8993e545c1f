"""Every model of the paper behind one registry keyed by the authors' names (spec method.md).

One interface for all: `loss(xs, reconst)`, `encode`, `decode`, `infer_transition`,
`rollout`, `predict`, and for SBD `set_change_of_basis` / `set_fix_indices`.
Hyper-parameters come from one dataclass per model (`Model.Config`).
"""

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn as nn

from msp import dynamics
from msp.networks import Decoder, Encoder, PointwiseEncoder


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
            H = H @ self.change_of_basis.to(H.dtype)
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
        """First-order roll-out of the last conditioning latent: (N, n_rolls, m, a)."""
        return dynamics.rollout_first_order(state["H"][:, -1], state["M"].to(state["H"].dtype), n_rolls)


@dataclass
class LstsqConfig(SeqAEConfig):
    predictive: bool = True  # False: the reconstruction model (roll from the first frame)


class Lstsq(SeqAE):
    """MSP: M* fitted by least squares inside each sequence (method.md, model 1)."""

    Config = LstsqConfig
    name = "lstsq"

    def transition(self, H: torch.Tensor) -> torch.Tensor:
        """H: (N, T, m, a) -> M*: (N, a, a)."""
        if self.fix_indices is not None:
            return dynamics.partial_least_squares_transition(H, self.fix_indices)
        return dynamics.least_squares_transition(H)

    def infer_transition(self, xs_cond):
        H = self.encode(xs_cond)
        return {"H": H, "M": self.transition(H)}

    def loss(self, xs, reconst=False, diagnostics=False):
        Tc = self.T_cond
        H = self.encode(xs[:, :Tc])
        M = self.transition(H)
        if self.cfg.predictive:
            start, n_rolls, target, prefix = H[:, -1], xs.shape[1] - Tc, xs[:, Tc:], H
        else:  # roll from the FIRST frame; targets are frames 2..T (method.md, model 3)
            start, n_rolls, target, prefix = H[:, 0], xs.shape[1] - 1, xs[:, 1:], H[:, :1]
        H_pred = dynamics.rollout_first_order(start, M.to(H.dtype), n_rolls)
        if reconst:  # also reconstruct the conditioning frames (reconst_iter switch)
            H_pred, target = torch.cat([prefix, H_pred], dim=1), xs
        loss = prediction_error(self.decode(H_pred), target)
        metrics = {"loss": loss.detach(), **{k: v.detach() for k, v in dynamics.internal_losses(H, M).items()}}
        if diagnostics:
            metrics.update(dynamics.transition_diagnostics(M, self.cfg.alignment))
        return loss, metrics


@dataclass
class LstsqMultiConfig(LstsqConfig):
    K: int = 8  # number of equal fixed blocks


class LstsqMulti(Lstsq):
    """MSP with K fixed blocks, each solved on its own columns (method.md, model 2)."""

    Config = LstsqMultiConfig
    name = "lstsq_multi"

    def transition(self, H):
        if self.fix_indices is not None:
            return dynamics.partial_least_squares_transition(H, self.fix_indices)
        return dynamics.block_least_squares_transition(H, self.cfg.K)


@dataclass
class LstsqRecConfig(LstsqConfig):
    T_cond: int = 3
    T_pred: int = 0
    predictive: bool = False


class LstsqRec(Lstsq):
    """Non-predictive ablation: fit on all frames, reconstruct frames 2..T from the first."""

    Config = LstsqRecConfig
    name = "lstsq_rec"


@dataclass
class HOLstsqConfig(SeqAEConfig):
    T_cond: int = 5
    T_pred: int = 5
    n_order: int = 2

    def __post_init__(self):
        if self.n_order != 2:
            raise ValueError(f"holstsq supports n_order = 2 (the paper's), got {self.n_order}")


class HOLstsq(SeqAE):
    """Second-order MSP for accelerated sequences (method.md, model 4)."""

    Config = HOLstsqConfig
    name = "holstsq"

    def infer_transition(self, xs_cond):
        H = self.encode(xs_cond)
        if self.fix_indices is not None:
            idx = torch.as_tensor(self.fix_indices, device=H.device)
            M_sub, A_sub = dynamics.second_order_transition(H.index_select(-1, idx))
            M, A = (self._embed_in_identity(X, idx) for X in (M_sub, A_sub))
        else:
            M, A = dynamics.second_order_transition(H)
        return {"H": H, "M": M, "A": A}

    def _embed_in_identity(self, X, idx):
        out = torch.eye(self.dim_a, device=X.device, dtype=X.dtype).repeat(X.shape[0], 1, 1)
        out[:, idx[:, None], idx[None, :]] = X
        return out

    def rollout(self, state, n_rolls):
        H = state["H"]
        return dynamics.rollout_second_order(H[:, -1], state["M"].to(H.dtype), state["A"].to(H.dtype), n_rolls)

    def loss(self, xs, reconst=False, diagnostics=False):
        if reconst:
            raise ValueError("holstsq has no reconstruction phase (as in the authors' model): set train.reconst_iter: 0")
        state = self.infer_transition(xs[:, : self.T_cond])
        loss = prediction_error(self.decode(self.rollout(state, xs.shape[1] - self.T_cond)), xs[:, self.T_cond :])
        H = state["H"]
        metrics = {"loss": loss.detach(), "loss_internal_0": ((H[:, 2:] - H[:, :-2]) ** 2).sum().detach()}
        if diagnostics:
            metrics.update(dynamics.transition_diagnostics(state["A"], self.cfg.alignment))
        return loss, metrics


@dataclass
class NeuralMConfig(SeqAEConfig):
    M_scale: float = 0.01  # M = M_scale * CNN(conditioning frames)


class NeuralM(SeqAE):
    """M predicted by a second ResNet encoder from the stacked conditioning frames (model 5)."""

    Config = NeuralMConfig
    name = "neuralM"

    def __init__(self, cfg, image_shape):
        super().__init__(cfg, image_shape)
        C, S, _ = image_shape
        self.M_net = Encoder(C * cfg.T_cond, S, cfg.dim_a**2, cfg.k, cfg.n_blocks, cfg.kernel_size)

    def transition_from_frames(self, xs_cond):
        """xs_cond: (N, Tc, C, H, W) -> M: (N, a, a), expressed in the current basis U."""
        N = xs_cond.shape[0]
        M = self.cfg.M_scale * self.M_net(xs_cond.flatten(1, 2)).view(N, self.dim_a, self.dim_a)  # (N, Tc C, H, W) in
        if self.change_of_basis is not None:
            U = self.change_of_basis.float()
            M = torch.linalg.solve(U, M.float() @ U).to(M.dtype)  # U^-1 M U
        if self.fix_indices is not None:
            idx = torch.as_tensor(self.fix_indices, device=M.device)
            keep = torch.eye(self.dim_a, device=M.device, dtype=M.dtype).repeat(N, 1, 1)
            keep[:, idx[:, None], idx[None, :]] = M[:, idx[:, None], idx[None, :]]
            M = keep
        return M

    def infer_transition(self, xs_cond):
        return {"H": self.encode(xs_cond), "M": self.transition_from_frames(xs_cond)}

    def loss(self, xs, reconst=False, diagnostics=False):
        Tc = self.T_cond
        M = self.transition_from_frames(xs[:, :Tc])
        # Without reconstruction only the last conditioning frame needs encoding.
        H = self.encode(xs[:, :Tc] if reconst else xs[:, Tc - 1 : Tc])
        H_pred = dynamics.rollout_first_order(H[:, -1], M, xs.shape[1] - Tc)
        target = xs[:, Tc:]
        if reconst:
            H_pred, target = torch.cat([H, H_pred], dim=1), xs
        loss = prediction_error(self.decode(H_pred), target)
        metrics = {"loss": loss.detach()}
        if diagnostics:
            metrics.update(dynamics.transition_diagnostics(M, self.cfg.alignment))
        return loss, metrics


@dataclass
class NeuralMLatentPredConfig(NeuralMConfig):
    loss_reconst_coeff: float = 0.0
    loss_pred_coeff: float = 1.0
    loss_latent_coeff: float = 0.0
    normalize: bool = True  # divide each latent column by its norm over dim_m


class NeuralMLatentPred(NeuralM):
    """Neural M* with column-normalized latents and a mixed observation/latent loss (model 6)."""

    Config = NeuralMLatentPredConfig
    name = "neuralM_latentpred"

    def encode(self, xs):
        H = super().encode(xs)
        return H / H.norm(dim=2, keepdim=True) if self.cfg.normalize else H

    def loss(self, xs, reconst=False, diagnostics=False):
        Tc, cfg = self.T_cond, self.cfg
        M = self.transition_from_frames(xs[:, :Tc])
        H_all = self.encode(xs)  # conditioning latents and latent targets
        H_pred = dynamics.rollout_first_order(H_all[:, Tc - 1], M, xs.shape[1] - Tc)
        x_hat = self.decode(torch.cat([H_all[:, :Tc], H_pred], dim=1))
        zero = xs.new_zeros(())
        parts = {
            "loss_reconst": prediction_error(x_hat[:, :Tc], xs[:, :Tc]) if cfg.loss_reconst_coeff else zero,
            "loss_pred": prediction_error(x_hat[:, Tc:], xs[:, Tc:]) if cfg.loss_pred_coeff else zero,
            "loss_latent": ((H_pred - H_all[:, Tc:]) ** 2).sum(dim=(2, 3)).mean() if cfg.loss_latent_coeff else zero,
        }
        loss = (
            cfg.loss_reconst_coeff * parts["loss_reconst"]
            + cfg.loss_pred_coeff * parts["loss_pred"]
            + cfg.loss_latent_coeff * parts["loss_latent"]
        )
        metrics = {"loss": loss.detach(), **{k: v.detach() for k, v in parts.items()}}
        if diagnostics:
            metrics.update(dynamics.transition_diagnostics(M, cfg.alignment))
        return loss, metrics


@dataclass
class NeuralTransConfig(SeqAEConfig):
    hidden: int = 128  # width of the 1x1-conv latent predictor


class NeuralTrans(SeqAE):
    """Autoregressive latent predictor: the last Tc latents -> the next one (model 7)."""

    Config = NeuralTransConfig
    name = "neural_trans"
    has_transition = False

    def __init__(self, cfg, image_shape):
        super().__init__(cfg, image_shape)
        self.predictor = PointwiseEncoder(cfg.T_cond * cfg.dim_a, cfg.dim_a, cfg.hidden)

    def infer_transition(self, xs_cond):
        return {"H": self.encode(xs_cond)}

    def step(self, window: torch.Tensor) -> torch.Tensor:
        """window: (N, Tc, m, a) -> next latent (N, m, a); channels ordered (t, a) as the authors'."""
        N, Tc, m, a = window.shape
        signal = window.permute(0, 2, 1, 3).reshape(N, m, Tc * a)  # length m, Tc*a channels
        return self.predictor(signal)  # (N, m, a)

    def rollout(self, state, n_rolls):
        window, out = state["H"][:, -self.T_cond :], []
        for _ in range(n_rolls):
            h = self.step(window)
            out.append(h)
            window = torch.cat([window[:, 1:], h[:, None]], dim=1)
        return torch.stack(out, dim=1)

    def loss(self, xs, reconst=False, diagnostics=False):
        Tc = self.T_cond
        H = self.encode(xs[:, :Tc])
        H_pred = self.rollout({"H": H}, xs.shape[1] - Tc)
        target = xs[:, Tc:]
        if reconst:
            H_pred, target = torch.cat([H, H_pred], dim=1), xs
        loss = prediction_error(self.decode(H_pred), target)
        return loss, {"loss": loss.detach()}


@dataclass
class SimCLRConfig(SeqAEConfig):
    T_pred: int = 0
    T_cond: int = 3  # every frame of a sequence is one view
    dim_mlp: int = 512
    dim_head: int = 512
    temperature: float = 0.01


class SimCLR(SeqAE):
    """Contrastive baseline: frames of one sequence are positives (authors' configs; no results)."""

    Config = SimCLRConfig
    name = "simclr"
    has_transition = False
    has_decoder = False
    encoder_to_latent = False

    def __init__(self, cfg, image_shape):
        super().__init__(cfg, image_shape)
        self.head = nn.Sequential(
            nn.Linear(self.encoder.feature_dim, cfg.dim_mlp), nn.ReLU(), nn.Linear(cfg.dim_mlp, cfg.dim_head)
        )

    def encode(self, xs):
        """xs: (N, T, C, H, W) -> projected features (N, T, dim_head)."""
        N, T = xs.shape[:2]
        return self.head(self.encoder(xs.flatten(0, 1))).view(N, T, -1)

    def decode(self, H):
        raise NotImplementedError("simclr has no decoder: it is a representation-learning baseline")

    def infer_transition(self, xs_cond):
        raise NotImplementedError("simclr has no transition and no prediction (the paper evaluates none)")

    def loss(self, xs, reconst=False, diagnostics=False):
        z = self.encode(xs)
        loss = dynamics.info_nce([z[:, t] for t in range(z.shape[1])], self.cfg.temperature)
        return loss, {"loss": loss.detach()}


@dataclass
class CPCConfig(SeqAEConfig):
    hidden: int = 128
    temperature: float = 0.01


class CPC(SeqAE):
    """Contrastive predictive coding baseline: predict the next latent, contrast against the batch."""

    Config = CPCConfig
    name = "cpc"
    has_transition = False
    has_decoder = False

    def __init__(self, cfg, image_shape):
        super().__init__(cfg, image_shape)
        if cfg.T_pred != 1:
            raise ValueError(f"cpc predicts exactly one frame: set model.T_pred: 1 (got {cfg.T_pred})")
        self.predictor = PointwiseEncoder(cfg.T_cond * cfg.dim_a, cfg.dim_a, cfg.hidden)

    step = NeuralTrans.step

    def decode(self, H):
        raise NotImplementedError("cpc has no decoder: it is a representation-learning baseline")

    def infer_transition(self, xs_cond):
        raise NotImplementedError("cpc has no transition and no prediction in observation space")

    def loss(self, xs, reconst=False, diagnostics=False):
        H = self.encode(xs)
        pred = self.step(H[:, : self.T_cond])  # (N, m, a)
        loss = dynamics.info_nce([pred.flatten(1), H[:, self.T_cond].flatten(1)], self.cfg.temperature)
        return loss, {"loss": loss.detach()}


MODELS: dict[str, type[SeqAE]] = {
    cls.name: cls for cls in (Lstsq, LstsqMulti, LstsqRec, HOLstsq, NeuralM, NeuralMLatentPred, NeuralTrans, SimCLR, CPC)
}


def model_config(model_cfg: dict) -> SeqAEConfig:
    """{'name': ..., **hyper-parameters} -> the model's dataclass; unknown keys are an error."""
    cfg = dict(model_cfg)
    name = cfg.pop("name", None)
    cfg.pop("image_shape", None)
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}: choose one of {sorted(MODELS)}")
    Config = MODELS[name].Config
    fields = {f.name for f in dataclasses.fields(Config)}
    unknown = sorted(set(cfg) - fields)
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} for model {name!r}: valid keys are {sorted(fields)}")
    from msp.config import check_type

    for f in dataclasses.fields(Config):
        if f.name in cfg:
            cfg[f.name] = check_type(f"model.{f.name}", cfg[f.name], f.type)
    return Config(**cfg)


def build_model(model_cfg: dict, image_shape) -> SeqAE:
    """model_cfg: {'name': registry key, **dataclass fields}; image_shape: (C, H, W)."""
    cfg = model_config(model_cfg)
    return MODELS[model_cfg["name"]](cfg, tuple(image_shape))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
