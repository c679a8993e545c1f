"""The authors' module tree re-implemented for tests/test_authors_checkpoint.py.

`AuthorsLike*` is an independent re-implementation of the authors' module tree
(github.com/takerum/meta_sequential_prediction, models/seqae.py, base_networks.py,
resblock.py), written from its structure: the same attribute names and nn.Sequential
indices (activations and rearrange layers included), weight standardization registered
with torch.nn.utils.parametrize, explicit shapes instead of lazy modules. Its state_dict
therefore has the authors' key names; we import it and compare outputs.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.nn.utils.parametrize as parametrize


class Standardize(nn.Module):
    """Parametrization: per output channel, zero mean and unit unbiased std (+1e-5)."""

    def forward(self, w):
        rows = w.reshape(w.shape[0], -1)
        centred = rows - rows.mean(dim=1, keepdim=True)
        return (centred / (centred.std(dim=1, keepdim=True) + 1e-5)).reshape(w.shape)


class PositionalTable(nn.Module):
    def __init__(self, h, w):
        super().__init__()
        self.emb = nn.Parameter(torch.randn(64, h, w))

    def forward(self, x):
        return torch.cat([x, self.emb.unsqueeze(0).repeat(x.shape[0], 1, 1, 1)], dim=1)


class AuthorsLikeBlock(nn.Module):
    def __init__(self, c_in, c_out, resample, emb_size=None):
        super().__init__()
        self.resample = resample
        self.pe = PositionalTable(*emb_size) if emb_size else None
        c_conv = c_in + (64 if emb_size else 0)
        self.c1 = nn.Conv2d(c_conv, c_out, 3, padding=1)
        self.c2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        parametrize.register_parametrization(self.c1, "weight", Standardize())
        parametrize.register_parametrization(self.c2, "weight", Standardize())
        self.b1 = nn.GroupNorm(min(32, c_in), c_in)
        self.b2 = nn.GroupNorm(min(32, c_out), c_out)
        self.c_sc = nn.Conv2d(c_conv, c_out, 1)

    def _prep(self, x):
        if self.resample == "up":
            x = x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
        return self.pe(x) if self.pe is not None else x

    def forward(self, x):
        r = self.c2(torch.relu(self.b2(self.c1(self._prep(torch.relu(self.b1(x)))))))
        s = self.c_sc(self._prep(x))
        if self.resample == "down":
            r, s = F.avg_pool2d(r, 2), F.avg_pool2d(s, 2)
        return r + s


class AuthorsLikeEncoder(nn.Module):
    def __init__(self, c_in, side, w0, n_blocks, out_dim):
        super().__init__()
        widths = [w0 * 2**i for i in range(n_blocks + 1)]
        self.phi = nn.Sequential(
            nn.Conv2d(c_in, w0, 3, padding=1),
            *[AuthorsLikeBlock(widths[i], widths[i + 1], "down") for i in range(n_blocks)],
            nn.GroupNorm(min(32, widths[-1]), widths[-1]),
            nn.ReLU(),
        )
        feat = widths[-1] * (side // 2**n_blocks) ** 2
        self.linear = nn.Linear(feat, out_dim) if out_dim else None

    def forward(self, x):
        h = self.phi(x).reshape(x.shape[0], -1)
        return self.linear(h) if self.linear is not None else h


class AuthorsLikeDecoder(nn.Module):
    def __init__(self, c_out, latent, w0, n_blocks, bottom):
        super().__init__()
        self.bottom = bottom
        self.linear = nn.Linear(latent, w0 * 2**n_blocks)
        self.net = nn.Sequential(
            *[AuthorsLikeBlock(w0 * 2 ** (i + 1), w0 * 2**i, "up", (bottom * 2 ** (n_blocks - i),) * 2)
              for i in reversed(range(n_blocks))],
            nn.GroupNorm(min(32, w0), w0),
            nn.ReLU(),
            nn.Conv2d(w0, c_out, 3, padding=1),
        )

    def forward(self, z):
        h = self.linear(z)[:, :, None, None].repeat(1, 1, self.bottom, self.bottom)
        return torch.sigmoid(self.net(h))


class Swap(nn.Module):  # stands in for einops Rearrange('n c s -> n s c'): no parameters
    def forward(self, x):
        return x.transpose(1, 2)


class AuthorsLikePointBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c1, self.c2, self.c_sc = nn.Conv1d(c, c, 1), nn.Conv1d(c, c, 1), nn.Conv1d(c, c, 1)
        parametrize.register_parametrization(self.c1, "weight", Standardize())
        parametrize.register_parametrization(self.c2, "weight", Standardize())
        self.norm1, self.norm2 = nn.LayerNorm(c), nn.LayerNorm(c)

    def forward(self, x):  # x: (n, c, s)
        h = self.c1(torch.relu(self.norm1(x.transpose(1, 2)).transpose(1, 2)))
        h = self.c2(torch.relu(self.norm2(h.transpose(1, 2)).transpose(1, 2)))
        return h + self.c_sc(x)


def authors_like_ar(c_in, c_out, hidden=128):
    return nn.Sequential(
        nn.Conv1d(c_in, hidden, 1), AuthorsLikePointBlock(hidden), AuthorsLikePointBlock(hidden),
        Swap(), nn.LayerNorm(hidden), Swap(), nn.ReLU(), nn.Conv1d(hidden, c_out, 1),
    )


class AuthorsLikeSeqAE(nn.Module):
    def __init__(self, kind, image_shape, w0, n_blocks, dim_m, dim_a, T_cond=2, change_of_basis=False):
        super().__init__()
        C, S, _ = image_shape
        self.kind, self.m, self.a, self.T_cond = kind, dim_m, dim_a, T_cond
        self.enc = AuthorsLikeEncoder(C, S, w0, n_blocks, dim_m * dim_a)
        if kind == "neuralM":
            self.M_net = AuthorsLikeEncoder(C * T_cond, S, w0, n_blocks, dim_a * dim_a)
        if kind == "neural_trans":
            self.ar = authors_like_ar(T_cond * dim_a, dim_a)
        self.dec = AuthorsLikeDecoder(C, dim_m * dim_a, w0, n_blocks, S // 2**n_blocks)
        if change_of_basis:
            self.change_of_basis = nn.Parameter(torch.eye(dim_a))

    def encode(self, xs):
        N, T = xs.shape[:2]
        H = self.enc(xs.reshape(N * T, *xs.shape[2:])).reshape(N, T, self.m, self.a)
        return H @ self.change_of_basis if hasattr(self, "change_of_basis") else H

    def decode(self, H):
        N, T = H.shape[:2]
        if hasattr(self, "change_of_basis"):
            H = H @ torch.linalg.inv(self.change_of_basis)
        x = self.dec(H.reshape(N * T, self.m * self.a))
        return x.reshape(N, T, *x.shape[1:])

    def predict(self, xs_cond, n_rolls):
        N = xs_cond.shape[0]
        if self.kind == "neural_trans":
            H, preds = self.encode(xs_cond), []
            for _ in range(n_rolls):
                signal = H.permute(0, 1, 3, 2).reshape(N, -1, self.m)  # (n, (t a), s)
                h = self.ar(signal).reshape(N, 1, self.a, self.m).transpose(2, 3)
                preds.append(h)
                H = torch.cat([H[:, 1:], h], dim=1)
            return self.decode(torch.cat(preds, dim=1))
        if self.kind == "neuralM":
            M = 0.01 * self.M_net(xs_cond.reshape(N, -1, *xs_cond.shape[3:])).reshape(N, self.a, self.a)
            H_last = self.encode(xs_cond[:, -1:])
        else:
            H = self.encode(xs_cond)
            X, Y = H[:, :-1].reshape(N, -1, self.a), H[:, 1:].reshape(N, -1, self.a)
            M = torch.linalg.solve(X.transpose(1, 2) @ X, X.transpose(1, 2) @ Y)
            H_last = H[:, -1:]
        preds = []
        for _ in range(n_rolls):
            H_last = H_last @ M[:, None]
            preds.append(H_last)
        return self.decode(torch.cat(preds, dim=1))


def randomize_(module, seed=0):
    """Perturb every parameter so norms, biases and embeddings are all non-trivial."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if name.endswith("change_of_basis"):
                p.add_(0.3 * noise)
            elif p.dim() > 1 and not name.endswith("emb"):
                p.mul_(1 + 0.2 * noise)
            else:
                p.add_(0.1 * noise)
    return module


CASES = {  # name: (our model config, authors-like kind, image shape)
    "lstsq": ({"name": "lstsq"}, "lstsq", (3, 32, 32)),
    "lstsq_norb_like": ({"name": "lstsq", "n_blocks": 4}, "lstsq", (1, 32, 32)),
    "neuralM": ({"name": "neuralM"}, "neuralM", (3, 32, 32)),
    "neural_trans": ({"name": "neural_trans"}, "neural_trans", (3, 32, 32)),
}


def make_pair(case, dim_m=16, dim_a=4, change_of_basis=False, seed=0):
    cfg, kind, shape = CASES[case]
    cfg = {"k": 0.25, "dim_m": dim_m, "dim_a": dim_a, **cfg}
    torch.manual_seed(seed)
    ref = AuthorsLikeSeqAE(kind, shape, 8, cfg.get("n_blocks", 3), dim_m, dim_a, change_of_basis=change_of_basis)
    randomize_(ref, seed)
    return cfg, shape, ref.eval()
