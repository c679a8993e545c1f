"""A fake linear world with known answers for the evaluation tests (test_eval_protocols.py,
test_eval_sbd.py, test_eval_cli.py, test_trivial_baselines.py). The fakes follow the Model
and Data APIs of docs/interfaces.md: frames are (1, m, a) images that ARE latent matrices,
moved by a known block-diagonal transition hidden by a basis P."""

import pytest
import torch

from msp.cli import main as msp_main

M_ROWS, BLOCKS = 6, [[0, 1], [2, 3], [4]]  # two 2x2 rotation blocks and a 1x1 scale block


def orthogonal(a, seed):
    return torch.linalg.qr(torch.randn(a, a, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))[0]


class FakeSequences:
    """x_t = x_0 (P B P^-1)^t: factor 0/1 rotate block 0/1 by a velocity angle, factor 2
    scales the 1x1 block by exp(velocity); x_0 (m, a) is the per-sequence content."""

    factor_names = ["rot_a", "rot_b", "scale"]
    default_active_actions = [0, 1, 2]

    def __init__(self, T=5, seed=0, basis=None, shared_transition=False, active_actions=None, **ignored):
        self.T, self.shared_transition = T, shared_transition
        self.active_actions = self.default_active_actions if active_actions is None else list(active_actions)
        self.P = orthogonal(5, 7) if basis is None else basis
        self.image_shape = (1, M_ROWS, 5)
        self.gen = torch.Generator().manual_seed(seed)
        self.options = ignored
        if shared_transition:
            self.redraw_shared_transition()

    def _velocities(self, n):
        v = torch.rand(n, 3, generator=self.gen, dtype=torch.float64) * 2 - 1  # (n, 3)
        v = v * torch.tensor([1.0, 0.5, 0.1], dtype=torch.float64)
        active = torch.zeros(3, dtype=torch.float64)
        active[self.active_actions] = 1
        return v * active

    def redraw_shared_transition(self):
        self.shared = self._velocities(1)

    def transitions(self, v):
        """velocities (n, 3) -> M = P B(v) P^-1 (n, 5, 5)."""
        B = torch.zeros(len(v), 5, 5, dtype=torch.float64)
        for f, (i, j) in enumerate([(0, 1), (2, 3)]):
            c, s = torch.cos(v[:, f]), torch.sin(v[:, f])
            B[:, i, i], B[:, i, j], B[:, j, i], B[:, j, j] = c, -s, s, c
        B[:, 4, 4] = torch.exp(v[:, 2])
        return self.P @ B @ torch.linalg.inv(self.P)

    def sample(self, batch_size):
        v = self.shared.expand(batch_size, 3) if self.shared_transition else self._velocities(batch_size)
        M = self.transitions(v)
        x = torch.randn(batch_size, M_ROWS, 5, generator=self.gen, dtype=torch.float64)
        frames = [x]
        for _ in range(self.T - 1):
            frames.append(frames[-1] @ M)
        return torch.stack(frames, 1)[:, :, None].float()  # (N, T, 1, m, a)


class FakeModel(torch.nn.Module):
    """Latent = frame, twisted by a content-dependent orthogonal Q(|x|) when twist != 0, so that
    the fitted M_i = Q_i^T M_g Q_i depends on the content; decode shrinks by `gain` so errors
    are not zero. M is fitted by least squares on all given frames (columns fix_indices only)."""

    name, T_pred, dim_m, dim_a, has_transition = "lstsq", 1, M_ROWS, 5, True

    def __init__(self, T_cond=2, twist=0.0, gain=0.9):
        super().__init__()
        self.T_cond, self.twist, self.gain = T_cond, twist, gain
        self.image_shape = (1, M_ROWS, 5)
        self.dummy = torch.nn.Parameter(torch.zeros(()))
        skew = torch.randn(5, 5, generator=torch.Generator().manual_seed(3))
        self.skew = (skew - skew.T) / 2
        self.U, self.fix = None, None

    def set_change_of_basis(self, U):
        self.U = None if U is None else U.float()

    def set_fix_indices(self, idx):
        self.fix = None if idx is None else sorted(idx)

    def _Q(self, H):  # (N, T, m, a) -> (N, T, a, a), constant along a norm-preserving sequence
        return torch.matrix_exp(self.twist * H.flatten(2).norm(dim=-1)[..., None, None] * self.skew)

    def encode(self, xs):
        H = xs[:, :, 0]
        H = H @ self._Q(H)
        return H if self.U is None else H @ self.U

    def decode(self, H):
        if self.U is not None:
            H = torch.linalg.solve(self.U.T, H.transpose(-2, -1)).transpose(-2, -1)  # H U^-1
        return self.gain * (H @ self._Q(H).transpose(-2, -1))[:, :, None]

    def infer_transition(self, xs_cond):
        H = self.encode(xs_cond)
        N, T, m, a = H.shape
        idx = list(range(a)) if self.fix is None else self.fix
        A = H[:, :-1][..., idx].reshape(N, -1, len(idx))
        B = H[:, 1:][..., idx].reshape(N, -1, len(idx))
        M = torch.eye(a).repeat(N, 1, 1)
        M[:, torch.tensor(idx)[:, None], torch.tensor(idx)[None, :]] = torch.linalg.lstsq(A.double(), B.double()).solution.float()
        return {"H": H, "M": M, "extra": torch.arange(N)}

    def rollout(self, state, n_rolls):
        h, out = state["H"][:, -1], []
        for _ in range(n_rolls):
            h = h @ state["M"]
            out.append(h)
        return torch.stack(out, 1)

    def predict(self, xs_cond, n_rolls):
        return self.decode(self.rollout(self.infer_transition(xs_cond), n_rolls))


def run_msp(argv):
    with pytest.raises(SystemExit) as done:
        msp_main(argv)
    assert done.value.code == 0
