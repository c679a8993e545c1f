"""The models of the paper, built by registry name (msp.registry.MODELS; docs/method.md).

One interface for all (msp.seqae.SeqAE): `loss(xs, reconst, diagnostics)`, `encode`,
`decode`, `infer_transition`, `rollout`, `predict`, and for SBD `set_change_of_basis` /
`set_fix_indices`. Hyper-parameters come from one dataclass per model (`Model.Config`).
This file holds the MSP family (lstsq, lstsq_multi, lstsq_rec, holstsq); the baselines live in msp.baselines.
"""

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn as nn

from msp import dynamics, registry
from msp.fields import dataclass_from_dict
from msp.seqae import SeqAE, SeqAEConfig, prediction_error


@dataclass
class LstsqConfig(SeqAEConfig):
    predictive: bool = True  # False: the reconstruction model (roll from the first frame)


class Lstsq(SeqAE):
    """MSP: M* fitted by least squares inside each sequence (docs/method.md, 'lstsq')."""

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
        else:  # roll from the FIRST frame; targets are frames 2..T (docs/method.md, 'lstsq_rec')
            start, n_rolls, target, prefix = H[:, 0], xs.shape[1] - 1, xs[:, 1:], H[:, :1]
        H_pred = dynamics.rollout_first_order(start, M, n_rolls)  # float32 (msp.dynamics)
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
    """MSP with K fixed blocks, each solved on its own columns (docs/method.md, 'lstsq_multi')."""

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
    """Second-order MSP for accelerated sequences (docs/method.md, 'holstsq')."""

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
        return dynamics.rollout_second_order(H[:, -1], state["M"], state["A"], n_rolls)  # float32

    def loss(self, xs, reconst=False, diagnostics=False):
        state = self.infer_transition(xs[:, : self.T_cond])
        H = state["H"]
        H_pred, target = self.rollout(state, xs.shape[1] - self.T_cond), xs[:, self.T_cond :]
        if reconst:  # a warm-up the authors' holstsq lacks; as in lstsq, decode the conditioning latents too
            H_pred, target = torch.cat([H, H_pred], dim=1), xs
        loss = prediction_error(self.decode(H_pred), target)
        metrics = {"loss": loss.detach(), "loss_internal_0": ((H[:, 2:] - H[:, :-2]) ** 2).sum().detach()}
        if diagnostics:
            metrics.update(dynamics.transition_diagnostics(state["A"], self.cfg.alignment))
        return loss, metrics


class _ModelClasses(Mapping):
    """Registry name -> model class, a live view of msp.registry.MODELS."""

    def __getitem__(self, name: str) -> type[SeqAE]:
        if name not in registry.MODELS:
            raise KeyError(name)
        return registry.MODELS[name].cls

    def __iter__(self):
        return iter(registry.MODELS)

    def __len__(self):
        return len(registry.MODELS)


MODELS: Mapping[str, type[SeqAE]] = _ModelClasses()


def model_config(model_cfg: dict) -> SeqAEConfig:
    """{'name': ..., **hyper-parameters} -> the model's dataclass; unknown keys are an error."""
    cfg = dict(model_cfg)
    name = cfg.pop("name", None)
    cfg.pop("image_shape", None)
    if name not in registry.MODELS:
        raise ValueError(f"unknown model {name!r}: choose one of {registry.model_names()}")
    return dataclass_from_dict(registry.MODELS[name].Config, "model", cfg)


def build_model(model_cfg: dict, image_shape) -> SeqAE:
    """model_cfg: {'name': registry key, **dataclass fields}; image_shape: (C, H, W)."""
    cfg = model_config(model_cfg)
    return registry.MODELS[model_cfg["name"]].cls(cfg, tuple(image_shape))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
