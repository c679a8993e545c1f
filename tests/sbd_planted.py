"""Planted families for the SBD known-answer tests and bench: M = P B P^-1 with a hidden basis P
of a chosen condition number and B block diagonal with known blocks."""

import numpy as np


def hidden_basis(a, cond, rng):
    """(a, a) with singular values log-spaced from 1 to 1/cond between two random rotations."""
    Q1, _ = np.linalg.qr(rng.standard_normal((a, a)))
    Q2, _ = np.linalg.qr(rng.standard_normal((a, a)))
    return Q1 @ np.diag(np.logspace(0, -np.log10(cond), a)) @ Q2


def planted_blocks(spec, theta):
    """Block-diagonal transitions. spec: list of (kind, factor, rate), kind in rot (2x2 rotation by
    rate * theta[factor]), so3 (3x3 rotation Rz(t) Rx(0.7 t), t = rate * theta[factor]: its axis
    moves with t, so the block is irreducible of real type), scale (1x1, exp(rate *
    theta[factor])), id (1x1 identity);
    theta: (N, F) factor parameters -> (B: (N, a, a), blocks: list of index lists)."""
    sizes = [{"rot": 2, "so3": 3}.get(kind, 1) for kind, _, _ in spec]
    a, N = sum(sizes), len(theta)
    B = np.zeros((N, a, a))
    blocks, start = [], 0
    for (kind, factor, rate), size in zip(spec, sizes):
        i = start
        if kind == "rot":
            c, s = np.cos(rate * theta[:, factor]), np.sin(rate * theta[:, factor])
            B[:, i, i], B[:, i, i + 1], B[:, i + 1, i], B[:, i + 1, i + 1] = c, -s, s, c
        elif kind == "so3":
            t = rate * theta[:, factor]
            c, s, c2, s2 = np.cos(t), np.sin(t), np.cos(0.7 * t), np.sin(0.7 * t)
            one, zero = np.ones_like(t), np.zeros_like(t)
            Rz = np.stack([np.stack([c, -s, zero], -1), np.stack([s, c, zero], -1), np.stack([zero, zero, one], -1)], -2)
            Rx = np.stack([np.stack([one, zero, zero], -1), np.stack([zero, c2, -s2], -1), np.stack([zero, s2, c2], -1)], -2)
            B[:, i:i + 3, i:i + 3] = Rz @ Rx
        elif kind == "scale":
            B[:, i, i] = np.exp(rate * theta[:, factor])
        else:
            B[:, i, i] = 1.0
        blocks.append(list(range(start, start + size)))
        start += size
    return B, blocks


# the issue's family: seven 2x2 rotations at distinct frequencies, 2 identity dims, 3 factors
ISSUE_SPEC = [("rot", 0, 1.0), ("rot", 0, 1.7), ("rot", 0, 2.3), ("rot", 1, 0.6), ("rot", 1, 1.3),
              ("rot", 2, 2.9), ("rot", 2, 0.45), ("id", None, 0), ("id", None, 0)]


def planted_family(spec=ISSUE_SPEC, n_all=3200, n_factor=320, cond=10.0, noise=0.0, seed=0):
    """All-factor and single-factor families hidden by one basis P.

    Returns dict M (n_all, a, a), factors [(n_factor, a, a)] (only factor f moves), P, blocks
    (true blocks in B's coordinates; P[:, block] spans each one), spec. noise: Gaussian entries
    of std noise * RMS entry of each family added to every matrix."""
    rng = np.random.default_rng(seed)
    n_f = 1 + max(f for _, f, _ in spec if f is not None)
    _, blocks = planted_blocks(spec, np.zeros((1, n_f)))
    a = blocks[-1][-1] + 1
    P = hidden_basis(a, cond, rng)
    Pinv = np.linalg.inv(P)

    def family(n, active):
        theta = rng.uniform(-1, 1, (n, n_f)) * np.isin(np.arange(n_f), active)
        M = P @ planted_blocks(spec, theta)[0] @ Pinv
        if noise:
            M = M + noise * np.sqrt((M ** 2).mean()) * rng.standard_normal(M.shape)
        return M

    return {"M": family(n_all, list(range(n_f))), "factors": [family(n_factor, [f]) for f in range(n_f)],
            "P": P, "blocks": blocks, "spec": spec}


def largest_principal_angle_sin(A, B):
    """sin of the largest principal angle between span(A) and span(B) (a, k) of equal dims."""
    Qa, _ = np.linalg.qr(A)
    Qb, _ = np.linalg.qr(B)
    return float(np.linalg.norm(Qa - Qb @ (Qb.T @ Qa), 2))
