"""Trivial predictors that need no training, the floor every prediction and equivariance
number is read against (README, "Trivial baselines").

- baseline_copy_last: every future frame is the last conditioning frame (the identity
  transition: right whenever nothing moves).
- baseline_mean_frame: every future frame is ONE mean image, the pixel-wise mean over all
  frames of training-split sequences drawn like the evaluation set (same length and
  options, split "train", another seed). One image for every horizon, not a per-horizon
  mean: it knows the data's average appearance, nothing of the sequence or of time.

Both implement the part of the Model API (docs/interfaces.md) that the protocols of
msp/eval_protocols.py call, so their numbers come from the very same code as the models'.
Their "latent" is the frame itself and their state holds only "H": swapping transitions
across the batch changes nothing, so for them L^p_equiv = L^p by construction. A model whose
L^p_equiv is not below the baselines' has learned no transition that transfers to other
content.
"""

import torch

from msp.runs import BASELINE_LABELS as LABELS, BASELINES, is_baseline  # noqa: F401 (re-exported)

MEAN_FRAME_SEQUENCES = 1024  # training-split sequences averaged into the mean frame


class TrivialPredictor:
    """Frames in, frames out: encode/decode are the identity; rollout repeats `_future`."""

    has_transition = True  # the protocols may run it; its "transition" ignores the sequence
    T_pred = 1

    def __init__(self, name: str, T_cond: int):
        self.name, self.T_cond = name, T_cond

    def encode(self, xs):
        return xs

    def decode(self, H):
        return H

    def infer_transition(self, xs_cond):
        """xs_cond: (N, Tc, C, H, W) -> {"H": xs_cond}: no transition key to swap."""
        return {"H": xs_cond}

    def rollout(self, state, n_rolls):
        """-> (N, n_rolls, C, H, W): the same frame at every horizon."""
        frame = self._future(state["H"])  # (N, C, H, W)
        return frame[:, None].expand(-1, n_rolls, *frame.shape[1:])

    def predict(self, xs_cond, n_rolls):
        return self.decode(self.rollout(self.infer_transition(xs_cond), n_rolls))

    def _future(self, H):
        raise NotImplementedError


class CopyLast(TrivialPredictor):
    def __init__(self, T_cond: int):
        super().__init__("baseline_copy_last", T_cond)

    def _future(self, H):
        return H[:, -1]


class MeanFrame(TrivialPredictor):
    def __init__(self, T_cond: int, mean: torch.Tensor):
        super().__init__("baseline_mean_frame", T_cond)
        self.mean = mean  # (C, H, W)

    def _future(self, H):
        return self.mean.to(H.device, H.dtype).expand(H.shape[0], *self.mean.shape)


@torch.no_grad()
def mean_frame(generator, n_sequences: int = MEAN_FRAME_SEQUENCES, batch_size: int = 64) -> torch.Tensor:
    """Pixel-wise mean over every frame of `n_sequences` sequences -> (C, H, W), float64
    (a running sum, so long sequences of large images never sit in memory at once)."""
    total, count = None, 0
    while count < n_sequences:
        xs = generator.sample(min(batch_size, n_sequences - count)).double()  # (N, T, C, H, W)
        part = xs.sum(dim=(0, 1))
        total = part if total is None else total + part
        count += xs.shape[0]
        frames = xs.shape[1]
    return (total / (count * frames)).float()


def build(name: str, T_cond: int, make_training_generator=None) -> TrivialPredictor:
    """The baseline `name` (BASELINES). baseline_mean_frame needs make_training_generator():
    a generator of training-split sequences to average."""
    if name == "baseline_copy_last":
        return CopyLast(T_cond)
    if name == "baseline_mean_frame":
        if make_training_generator is None:
            raise ValueError("baseline_mean_frame needs training sequences to average")
        return MeanFrame(T_cond, mean_frame(make_training_generator()))
    raise ValueError(f"unknown trivial baseline {name!r}; use one of {BASELINES}")
