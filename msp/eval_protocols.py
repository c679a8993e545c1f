"""Evaluation protocols of the paper as functions of a model and a sequence generator
(docs/evaluation.md: prediction, equivariance, generated sequences). The CLI in msp/evaluate.py wires them to
checkpoints and files; msp/sbd.py holds section 3.

Every error is the per-frame squared error summed over C, H, W, kept per sequence and per
horizon T_p = 1..n_rolls; the CLI averages over sequences.
"""

import math

import numpy as np
import pandas as pd
import torch

from msp import registry

DatasetProtocol = registry.EvalProtocol  # one per dataset: msp.registry.DatasetSpec.protocol


# options the evaluation sets control themselves; a training config's values are dropped
CONTROLLED_OPTIONS = ("shared_transition", "active_actions", "force_moving", "max_T")


def protocol_for(name) -> DatasetProtocol:
    if name not in registry.DATASETS:
        raise ValueError(f"no evaluation protocol for dataset {name!r}; known: {registry.dataset_names()}")
    return registry.DATASETS[name].protocol


def default_n_batches(name, batch_size):
    """Batches covering the authors' evaluation loader: ceil(eval_size / batch_size)."""
    return math.ceil(protocol_for(name).eval_size / batch_size)


def evaluation_options(config, T, **overrides):
    """Generator options of an evaluation set: the run's training options (digits,
    backgrounds, acceleration ranges, ...) minus those evaluation controls, plus max_T = T for
    the MNIST variants (evaluation translations span the whole sequence), plus overrides."""
    name = config["dataset"]["name"]
    options = {k: v for k, v in (config["dataset"].get("options") or {}).items() if k not in CONTROLLED_OPTIONS}
    if protocol_for(name).mnist_family:
        options["max_T"] = T
    options.update(overrides)
    return options


def sbd_data_options(name, T):
    """Training-distribution options for collecting M* (docs/evaluation.md, 'Simultaneous block diagonalization'): MNIST
    variants use velocity ranges [-0.2, 0.2] for rotation and hue; all factors move."""
    if protocol_for(name).mnist_family:
        return {"range_a": (-0.2, 0.2), "range_h": (-0.2, 0.2), "max_T": T}
    return {}


def make_generator(config, *, split, T, seed, device, root=None, source=None, **options):
    """A SequenceGenerator for the run's dataset (msp.data.build_sequences), with data root
    and source from the run config unless overridden."""
    from msp.data import build_sequences

    d = config["dataset"]
    return build_sequences(d["name"], root=root or d.get("root", "data"), source=source or d.get("source", "embedded"),
                           split=split, T=T, device=device, seed=seed,
                           **evaluation_options(config, T, **options))


def transition_frames(model, xs):
    """Frames from which to fit a sequence's M* for SBD. Least-squares models fit M* on the
    whole sequence (the authors' get_M); Neural M* reads a fixed number of stacked frames."""
    spec = registry.MODELS.get(model.name)
    if spec is not None and spec.fits_whole_sequence:
        return xs
    return xs[:, :model.T_cond]


def per_frame_sse(pred, target):
    """(N, n, C, H, W) pair -> (N, n) squared error summed over C, H, W (float64)."""
    return ((pred.double() - target.double()) ** 2).sum(dim=(2, 3, 4))


def swap_transitions(state):
    """Give sequence i the transition of sequence i-1 (cyclic): roll every key but "H"."""
    return {k: v if k == "H" else torch.roll(v, shifts=1, dims=0) for k, v in state.items()}


def require_transition(model, what):
    if not model.has_transition:
        with_m = [name for name, spec in registry.MODELS.items() if spec.has_transition]
        raise ValueError(f"{what} needs a model with a transition M ({', '.join(with_m)}); "
                         f"{model.name!r} has none (has_transition=False)")


def _n_rolls(xs, T_cond):
    n_rolls = xs.shape[1] - T_cond
    if n_rolls < 1:
        raise ValueError(f"sequences of T={xs.shape[1]} frames leave nothing to predict after T_cond={T_cond}; raise --T")
    return n_rolls


def predict_with_transition_from(model, xs, T_cond, fit_frames):
    """Diagnostic, not the paper's protocol (docs/evaluation.md, 'Diagnostics'): M* fitted on the
    first `fit_frames` frames of each sequence, rolled out from the last conditioning latent as in
    the protocol; frames past T_cond are ones it then predicts, so fit_frames > T_cond is an oracle.
    xs: (N, T, C, H, W) -> (N, T - T_cond, C, H, W)."""
    spec = registry.MODELS.get(model.name)
    if spec is None or not spec.fits_whole_sequence:
        from msp.seqae import SeqAE  # only for the message: which models roll out in first order

        fitting = [name for name, s in registry.MODELS.items() if s.fits_whole_sequence and s.cls.rollout is SeqAE.rollout]
        raise ValueError(f"fitting the transition on other frames needs a first-order least-squares model "
                         f"({', '.join(fitting)}); "
                         f"{model.name!r} reads a fixed number of frames")
    if not T_cond <= fit_frames <= xs.shape[1]:
        raise ValueError(f"fit_frames={fit_frames} must lie between T_cond={T_cond} and the sequence length T={xs.shape[1]}")
    state = model.infer_transition(xs[:, :fit_frames])
    if "A" in state:  # its M* is the operator at the last fitted pair, not at T_cond
        raise ValueError(f"{model.name!r} is second order: fitting on other frames than its T_cond is not defined")
    state["H"] = state["H"][:, :T_cond]  # (N, T_cond, m, a): roll from the last conditioning latent
    return model.decode(model.rollout(state, _n_rolls(xs, T_cond)))


def reconstruct_targets(model, xs, T_cond):
    """Diagnostic (docs/evaluation.md, 'Diagnostics'): each future frame decoded from its own latent,
    the floor the autoencoder sets for any transition. xs: (N, T, C, H, W) -> (N, T - T_cond, C, H, W)."""
    if not getattr(model, "has_decoder", True):
        raise ValueError(f"{model.name!r} has no decoder: there is nothing to reconstruct")
    _n_rolls(xs, T_cond)
    return model.decode(model.encode(xs[:, T_cond:]))


@torch.no_grad()
def prediction_errors(model, generator, T_cond, batch_size, n_batches, *, fit_frames=None, reconstruct=False):
    """Extrapolation error (docs/evaluation.md, 'Prediction error'): -> (S, n_rolls) per sequence and horizon,
    S = batch_size * n_batches, n_rolls = T - T_cond. fit_frames / reconstruct: the diagnostics above."""
    errors = []
    for _ in range(n_batches):
        xs = generator.sample(batch_size)  # (N, T, C, H, W)
        if reconstruct:
            pred = reconstruct_targets(model, xs, T_cond)
        elif fit_frames is not None:
            pred = predict_with_transition_from(model, xs, T_cond, fit_frames)
        else:
            pred = model.predict(xs[:, :T_cond], _n_rolls(xs, T_cond))
        errors.append(per_frame_sse(pred, xs[:, T_cond:]).cpu())
    return torch.cat(errors).numpy()


@torch.no_grad()
def equivariance_errors(model, generator, T_cond, batch_size, n_batches):
    """Equivariance error (docs/evaluation.md, 'Equivariance error') on a shared-transition generator, re-drawn
    after every batch. -> (Lp, Lp_equiv), each (S, n_rolls): the roll-out of each sequence's
    own transition and of its batch neighbour's (same g, other content)."""
    require_transition(model, "the equivariance evaluation")
    if not getattr(generator, "shared_transition", False):
        raise ValueError("the equivariance evaluation needs a generator built with shared_transition=True")
    own, swapped = [], []
    for _ in range(n_batches):
        xs = generator.sample(batch_size)
        n_rolls = _n_rolls(xs, T_cond)
        target = xs[:, T_cond:]
        state = model.infer_transition(xs[:, :T_cond])
        own.append(per_frame_sse(model.decode(model.rollout(state, n_rolls)), target).cpu())
        swapped.append(per_frame_sse(model.decode(model.rollout(swap_transitions(state), n_rolls)), target).cpu())
        generator.redraw_shared_transition()
    return torch.cat(own).numpy(), torch.cat(swapped).numpy()


def summarize_prediction(errors):
    """(S, n) errors -> DataFrame horizon, mse, mse_sem, n_sequences."""
    errors = np.where(np.isnan(errors), np.inf, errors)  # a diverged roll-out is inf, never NaN
    S = errors.shape[0]
    sem = errors.std(axis=0, ddof=1) / np.sqrt(S) if S > 1 else np.full(errors.shape[1], np.nan)
    return pd.DataFrame({"horizon": np.arange(1, errors.shape[1] + 1), "mse": errors.mean(axis=0),
                         "mse_sem": sem, "n_sequences": S})


def evaluation_set(config, *, split, T, T_cond, seed, batch_size, n_batches, source=None) -> dict:
    """What makes two models' per-sequence errors comparable sequence by sequence: the same
    dataset and generator options, split, length, conditioning, seed and batches (the data
    root is left out: the same files may lie elsewhere on another machine)."""
    d = config["dataset"]
    return {"dataset": d["name"], "source": source or d.get("source", "embedded"), "split": split, "T": T,
            "T_cond": T_cond, "seed": seed, "batch_size": batch_size, "n_batches": n_batches,
            "options": evaluation_options(config, T)}


def paired_difference(errors_a, errors_b) -> pd.DataFrame:
    """Two models on the same sequences: (S, n) and (S, n) -> per horizon the means, the mean
    paired difference b - a (> 0: a is better), its standard error and normal 95% interval,
    and the share of sequences on which a's error is the lower. Pairing removes the spread of
    the sequences themselves, which the per-model standard errors (mse_sem) include."""
    a, b = (np.where(np.isnan(x), np.inf, np.asarray(x, dtype=np.float64)) for x in (errors_a, errors_b))
    if a.shape != b.shape:
        raise ValueError(f"paired errors need the same sequences and horizons: shapes {a.shape} and {b.shape}")
    with np.errstate(invalid="ignore"):  # a diverged roll-out (inf) makes its horizon's diff +-inf, its sem NaN
        diff = b - a  # (S, n)
        S = diff.shape[0]
        sem = diff.std(axis=0, ddof=1) / np.sqrt(S) if S > 1 else np.full(diff.shape[1], np.nan)
        mean = diff.mean(axis=0)
    return pd.DataFrame({"horizon": np.arange(1, diff.shape[1] + 1), "mse_a": a.mean(axis=0),
                         "mse_b": b.mean(axis=0), "diff": mean, "diff_sem": sem,
                         "low95": mean - 1.96 * sem, "high95": mean + 1.96 * sem,
                         "share_a_lower": (a < b).mean(axis=0), "n_sequences": S})


def summarize_equivariance(Lp, Lp_equiv):
    """(S, n) pair -> DataFrame horizon, Lp, Lp_equiv, n_sequences."""
    Lp, Lp_equiv = (np.where(np.isnan(x), np.inf, x) for x in (Lp, Lp_equiv))  # diverged: inf
    return pd.DataFrame({"horizon": np.arange(1, Lp.shape[1] + 1), "Lp": Lp.mean(axis=0),
                         "Lp_equiv": Lp_equiv.mean(axis=0), "n_sequences": Lp.shape[0]})


@torch.no_grad()
def generate_samples(model, xs, T_cond):
    """Generated sequences (docs/evaluation.md, 'Generated sequences'). xs: (N, T, C, H, W) -> dict of numpy arrays
    cond (N, Tc, ...), target (N, n, ...), pred (N, n, ...) and, for models with a
    transition, pred_equiv: the roll-out with the neighbour's transition (meaningful when xs
    share their transformation)."""
    n_rolls = _n_rolls(xs, T_cond)
    state = model.infer_transition(xs[:, :T_cond])
    out = {"cond": xs[:, :T_cond], "target": xs[:, T_cond:], "pred": model.decode(model.rollout(state, n_rolls))}
    if model.has_transition:
        out["pred_equiv"] = model.decode(model.rollout(swap_transitions(state), n_rolls))
    return {k: v.float().cpu().numpy() for k, v in out.items()}
