"""The paper's baselines (docs/method.md, 'The model family'): Neural M*, Neural M* with latent
prediction, the neural transition, and the contrastive SimCLR and CPC."""

from dataclasses import dataclass

import torch
import torch.nn as nn

from msp import dynamics
from msp.networks import Encoder, PointwiseEncoder
from msp.seqae import SeqAE, SeqAEConfig, prediction_error


@dataclass
class NeuralMConfig(SeqAEConfig):
    M_scale: float = 0.01  # M = M_scale * CNN(conditioning frames)


class NeuralM(SeqAE):
    """M predicted by a second ResNet encoder from the stacked conditioning frames (docs/method.md, 'neuralM')."""

    Config = NeuralMConfig
    name = "neuralM"

    def __init__(self, cfg, image_shape):
        super().__init__(cfg, image_shape)
        C, S, _ = image_shape
        self.M_net = Encoder(C * cfg.T_cond, S, cfg.dim_a**2, cfg.k, cfg.n_blocks, cfg.kernel_size)

    def transition_from_frames(self, xs_cond):
        """xs_cond: (N, Tc, C, H, W) -> M: (N, a, a), expressed in the current basis U."""
        N = xs_cond.shape[0]
        M = self.M_net(xs_cond.flatten(1, 2)).view(N, self.dim_a, self.dim_a)  # (N, Tc C, H, W) in
        # The network may run bf16; M and everything built from it are float32 (msp.dynamics).
        M = self.cfg.M_scale * dynamics.at_least_float32(M)
        if self.change_of_basis is not None:
            U = self.change_of_basis.float()
            with dynamics.float32_math(M.device.type):
                M = torch.linalg.solve(U, M @ U)  # U^-1 M U
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
    """Neural M* with column-normalized latents and a mixed observation/latent loss (docs/method.md, 'neuralM_latentpred')."""

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
    """Autoregressive latent predictor: the last Tc latents -> the next one (docs/method.md, 'neural_trans')."""

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


class ContrastiveBaseline(SeqAE):
    """Representation-learning baselines: no decoder, no transition, no prediction."""

    has_transition = False
    has_decoder = False

    def decode(self, H):
        raise NotImplementedError(f"{self.name} has no decoder: it is a representation-learning baseline")

    def infer_transition(self, xs_cond):
        raise NotImplementedError(f"{self.name} has no transition and no prediction (the paper evaluates none)")


@dataclass
class SimCLRConfig(SeqAEConfig):
    T_pred: int = 0
    T_cond: int = 3  # every frame of a sequence is one view
    dim_mlp: int = 512
    dim_head: int = 512
    temperature: float = 0.01


class SimCLR(ContrastiveBaseline):
    """Contrastive baseline: frames of one sequence are positives (authors' configs; no results)."""

    Config = SimCLRConfig
    name = "simclr"
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

    def loss(self, xs, reconst=False, diagnostics=False):
        z = self.encode(xs)
        loss = dynamics.info_nce([z[:, t] for t in range(z.shape[1])], self.cfg.temperature)
        return loss, {"loss": loss.detach()}


@dataclass
class CPCConfig(SeqAEConfig):
    hidden: int = 128
    temperature: float = 0.01


class CPC(ContrastiveBaseline):
    """Contrastive predictive coding baseline: predict the next latent, contrast against the batch."""

    Config = CPCConfig
    name = "cpc"

    def __init__(self, cfg, image_shape):
        super().__init__(cfg, image_shape)
        if cfg.T_pred != 1:
            raise ValueError(f"cpc predicts exactly one frame: set model.T_pred: 1 (got {cfg.T_pred})")
        self.predictor = PointwiseEncoder(cfg.T_cond * cfg.dim_a, cfg.dim_a, cfg.hidden)

    step = NeuralTrans.step

    def loss(self, xs, reconst=False, diagnostics=False):
        H = self.encode(xs)
        pred = self.step(H[:, : self.T_cond])  # (N, m, a)
        loss = dynamics.info_nce([pred.flatten(1), H[:, self.T_cond].flatten(1)], self.cfg.temperature)
        return loss, {"loss": loss.detach()}
