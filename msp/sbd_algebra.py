"""Algebraic simultaneous block diagonalization (SBD): the finest common blocks of a family.

Given matrices M_1..M_N (a x a), find U and the finest partition of U's columns into
contiguous blocks such that every U^-1 M_i U is block diagonal. The method (see docs/sbd.md):

1. Commutant. X commutes with every M_i iff K_i vec(X) = 0 with K_i = M_i^T (x) I - I (x) M_i
   (column-major vec). The commutant is the null space of the Gram matrix
   G = sum_i K_i^T K_i = S1 (x) I + I (x) S2 - S3 - S3^T, S1 = sum M M^T, S2 = sum M^T M,
   S3 = sum M (x) M, formed without any K_i (one (N, a^2) x (a^2, N) product). Its dimension
   is read from the largest relative gap of G's spectrum: the gap ratio is the confidence.
2. Decomposition. The spectral projectors of any X in the commutant are polynomials in X, so
   they commute with every M_i: X's invariant subspaces (eigenvalues clustered, a complex
   conjugate pair kept as one real 2-dim subspace) are common invariant subspaces of the
   family. A generic (random, fixed seed) element splits the space into the finest blocks,
   except that where several copies of a real-type block repeat (e.g. static dims) a random
   real element may have complex eigenvalues; each block is therefore split again with the
   commutant restricted to it, until no element splits it any more.

This is the approach of Murota, Kanno, Kojima & Kojima (2010), "A numerical algorithm for
block-diagonal decomposition of matrix *-algebras with application to semidefinite
programming", Japan J. Indust. Appl. Math. 27:125-160, and Maehara & Murota (2010), "A
numerical algorithm for block-diagonal decomposition of matrix *-algebras with general
irreducible components", Japan J. Indust. Appl. Math. 27:263-293; Maehara & Murota (2011),
"Algorithm for error-controlled simultaneous block-diagonalization of matrices", SIAM J.
Matrix Anal. Appl. 32:605-620, treat noisy families through the same near-null space. Those
papers work with *-algebras (families closed under transpose, orthogonal U); learned
transitions are not (U is a general invertible matrix), so we use the commutant of the family
itself, which gives a direct-sum (not orthogonal) decomposition.

Everything is numpy float64; M acts from the right (H_{t+1} = H_t M), V = U^-1 M U.
"""

from dataclasses import dataclass, field

import numpy as np

GAP_FLOOR = 1e-12      # eigenvalues of G below this (relative to the largest) count as exact zeros
MIN_GAP = 10.0         # a commutant beyond the identity needs at least this gap ratio
TRIES = 8              # random commutant elements tried per block (fixed seeds)


def centre_and_scale(M):
    """Remove each matrix's scalar part (it commutes with everything) and scale the family to
    mean squared Frobenius norm 1, so that G's spectrum is comparable across families.
    M: (N, a, a) -> (N, a, a)."""
    M = np.asarray(M, dtype=np.float64)
    a = M.shape[-1]
    Mc = M - (np.trace(M, axis1=1, axis2=2) / a)[:, None, None] * np.eye(a)
    rms = np.sqrt((Mc ** 2).sum(axis=(1, 2)).mean())
    return Mc / rms if rms > 0 else Mc


def commutator_gram(M):
    """G = mean_i K_i^T K_i for K_i = M_i^T (x) I - I (x) M_i. M: (N, a, a) -> (a^2, a^2).
    Cost: one (a^2, N) x (N, a^2) product, ~N a^4 flops."""
    N, a, _ = M.shape
    eye = np.eye(a)
    S1 = np.einsum("nij,nkj->ik", M, M) / N            # mean M M^T
    S2 = np.einsum("nji,njk->ik", M, M) / N            # mean M^T M
    flat = M.reshape(N, a * a)
    # (M (x) M)[(i,k), (j,l)] = M[i,j] M[k,l]
    S3 = (flat.T @ flat / N).reshape(a, a, a, a).transpose(0, 2, 1, 3).reshape(a * a, a * a)
    return np.kron(S1, eye) + np.kron(eye, S2) - S3 - S3.T


@dataclass
class Commutant:
    basis: np.ndarray          # (d, a, a): orthonormal (Frobenius) basis, basis[0] = I / sqrt(a)
    eigenvalues: np.ndarray    # (a^2 - 1,) of G off the identity, ascending, relative to the largest
    dim: int                   # d (>= 1: the identity always commutes)
    gap: float                 # eigenvalue ratio at the cut (inf-like 1/GAP_FLOOR when exact)


def commutant(M, dim=None):
    """Approximate commutant of a family. M: (N, a, a) -> Commutant.

    The identity is always in the commutant and is taken out exactly (so that a noisy family's
    near-null eigenvalues are compared with each other, not with the identity's exact zero).
    The dimension is 1 + k, where k maximises (l_{k+1} + f) / (l_k + f) over the remaining
    relative eigenvalues l (f = GAP_FLOOR), provided that ratio is at least MIN_GAP; else
    1 (only the identity: one block). `dim` forces the dimension."""
    Mc = centre_and_scale(M)
    a = Mc.shape[-1]
    G = commutator_gram(Mc)
    top = max(float(np.linalg.eigvalsh(G)[-1]) if a > 1 else 0.0, 0.0)
    e = np.eye(a).reshape(-1) / np.sqrt(a)              # vec(I) / ||I||
    G = G + (top + 1.0) * np.outer(e, e)                # move the identity to the top of the spectrum
    lam, vec = np.linalg.eigh(G)
    lam, vec = lam[:-1], vec[:, :-1]                    # drop the identity direction
    scale = top if top > 0 else 1.0
    rel = np.clip(lam / scale, 0.0, None)
    if top <= 0:                                        # every matrix is scalar: everything commutes
        k, gap = a * a - 1, 1.0 / GAP_FLOOR
    else:
        ratios = (rel[1:] + GAP_FLOOR) / (rel[:-1] + GAP_FLOOR)
        k = int(np.argmax(ratios)) + 1 if len(ratios) else 0
        gap = float(ratios[k - 1]) if k else 1.0
        if gap < MIN_GAP:
            k = 0
    if dim is not None:
        k = dim - 1
        gap = float((rel[k] + GAP_FLOOR) / (rel[k - 1] + GAP_FLOOR)) if 0 < k < len(rel) else gap
    # column-major vec: X[i, j] = v[j * a + i]
    others = vec[:, :k].T.reshape(k, a, a).transpose(0, 2, 1)
    basis = np.concatenate([np.eye(a)[None] / np.sqrt(a), others])
    return Commutant(basis=basis, eigenvalues=rel, dim=k + 1, gap=gap)


def invariant_subspaces(X, tol, scale=None):
    """Real invariant subspaces of X (r, r) from its eigenvalues clustered by single linkage at
    tol * scale (default: the spread of the eigenvalues); a cluster and its complex conjugate
    form one subspace. Returns a list of (r, r_k) orthonormal bases, ordered by the clusters'
    eigenvalues."""
    r = X.shape[0]
    w, V = np.linalg.eig(X)
    spread = float(np.abs(w - w.mean()).max()) if scale is None else scale
    spread = max(spread, 1e-300)
    label = list(range(r))

    def root(i):
        while label[i] != i:
            i = label[i]
        return i

    def union(i, j):
        label[root(i)] = root(j)

    close = np.abs(w[:, None] - w[None, :]) <= tol * spread
    for i in range(r):
        union(i, int(np.argmin(np.abs(w - w[i].conj()))))  # the conjugate partner
        for j in np.nonzero(close[i])[0]:
            union(i, int(j))
    groups = {}
    for i in range(r):
        groups.setdefault(root(i), []).append(i)
    groups = sorted(groups.values(), key=lambda g: (float(w[g].real.mean()), float(np.abs(w[g].imag).mean())))
    bases = []
    for g in groups:
        vectors = np.concatenate([V[:, g].real, V[:, g].imag], axis=1)  # spans the real subspace
        left, _, _ = np.linalg.svd(vectors, full_matrices=False)
        bases.append(left[:, :len(g)])
    return bases


def cluster_tolerance(comm):
    """Eigenvalue clustering tolerance from the commutant's noise: ~10x the relative size of
    the commutator residual sqrt(l_d / l_{d+1}), between 1e-7 and 0.2."""
    rel = comm.eigenvalues
    k = comm.dim - 1
    if k == 0 or k >= len(rel):
        return 1e-7
    noise = np.sqrt((rel[k - 1] + GAP_FLOOR) / (rel[k] + GAP_FLOOR))
    return float(np.clip(10 * noise, 1e-7, 0.2))


def _split_once(C, W, tol, rng):
    """Try TRIES random elements of the restricted commutant C (d, r, r); return the finest
    split found: a list of (r, r_k) bases (one element = no split).

    The identity (C[0], W[0]) is left out: it splits nothing. Eigenvalues are clustered
    relative to the eigenvalue spread of the same combination of the whole commutant W
    (d, a, a), not of the block's own: on a block where only scalars commute with the family,
    the restricted element is scalar plus noise, and its spread is noise, not structure.
    (Eigenvalues, unlike norms, do not depend on how ill-conditioned the basis is.)"""
    best = [np.eye(C.shape[-1])]
    if len(C) < 2:
        return best
    for _ in range(TRIES):
        c = rng.standard_normal(len(C) - 1)
        w = np.linalg.eigvals(np.tensordot(c, W[1:], axes=1))
        scale = float(np.abs(w - w.mean()).max())
        bases = invariant_subspaces(np.tensordot(c, C[1:], axes=1), tol, scale)
        if len(bases) > len(best):
            best = bases
    return best


def refine_blocks(U, sizes, comm, tol, seed=0):
    """Split every block of (U, sizes) as far as the commutant allows.

    U: (a, a) change of basis whose consecutive column groups of `sizes` are the blocks;
    comm: Commutant of the family. Each block b is split with the commutant restricted to it,
    (U^-1 X U)[b, b] for X in comm.basis, recursively until no random element splits it.
    Returns (U', sizes'): the refined basis (columns of each block replaced by its parts)."""
    rng = np.random.default_rng(seed)
    W = np.linalg.solve(U[None], comm.basis @ U[None])  # (d, a, a) commutant in U's basis
    columns, new_sizes, start = [], [], 0
    stack = []
    for size in sizes:
        stack.append((U[:, start:start + size], W[:, start:start + size, start:start + size]))
        start += size
    while stack:
        Q, C = stack.pop(0)
        r = Q.shape[1]
        parts = _split_once(C, W, tol, rng) if r > 1 else [np.eye(1)]
        if len(parts) == 1:
            columns.append(Q)
            new_sizes.append(r)
            continue
        P = np.concatenate(parts, axis=1)                # (r, r): the block's new basis
        Cp = np.linalg.solve(P[None], C @ P[None])
        offsets = np.cumsum([0] + [p.shape[1] for p in parts])
        # the parts of this block come next, in order, before the blocks after it
        stack[:0] = [(Q @ parts[k], Cp[:, offsets[k]:offsets[k + 1], offsets[k]:offsets[k + 1]])
                     for k in range(len(parts))]
    return np.concatenate(columns, axis=1), new_sizes


@dataclass
class Decomposition:
    U: np.ndarray              # (a, a); blocks are consecutive column groups
    block_sizes: list          # sizes in the order of U's columns
    commutant_dim: int
    gap: float
    eigenvalues: list = field(default_factory=list)   # relative commutator-Gram spectrum (ascending)
    cluster_tol: float = 0.0


def algebraic_sbd(M, seed=0, dim=None, comm=None):
    """The finest simultaneous block diagonalization of a family. M: (N, a, a) -> Decomposition.
    Deterministic for a given seed. `dim` forces the commutant dimension; `comm` reuses an
    already computed commutant(M)."""
    M = np.asarray(M, dtype=np.float64)
    a = M.shape[-1]
    comm = commutant(M, dim=dim) if comm is None else comm
    tol = cluster_tolerance(comm)
    U, sizes = refine_blocks(np.eye(a), [a], comm, tol, seed=seed)
    # columns of unit length, so that U's condition number reflects the blocks' angles only
    U = U / np.linalg.norm(U, axis=0, keepdims=True)
    return Decomposition(U=U, block_sizes=sizes, commutant_dim=comm.dim, gap=comm.gap,
                         eigenvalues=comm.eigenvalues.tolist(), cluster_tol=tol)


def finest_sizes(M, U, sizes, seed=0):
    """Block sizes after splitting the given blocks (U, sizes) as far as the family's commutant
    allows: equal to `sizes` iff the given partition is already the finest. -> list of ints."""
    M = np.asarray(M, dtype=np.float64)
    comm = commutant(M)
    return refine_blocks(np.asarray(U, dtype=np.float64), list(sizes), comm, cluster_tolerance(comm), seed=seed)[1]


def block_slices(sizes):
    starts = np.cumsum([0] + list(sizes))
    return [slice(int(s), int(e)) for s, e in zip(starts[:-1], starts[1:])]


def block_motion(V, sizes):
    """Mean squared motion ||V[b, b] - I||_F^2 inside each diagonal block.
    V: (N, a, a) in the block basis -> (B,)."""
    D = np.asarray(V, dtype=np.float64) - np.eye(V.shape[-1])
    return np.array([(D[:, s, s] ** 2).sum(axis=(1, 2)).mean() for s in block_slices(sizes)])


def factor_ownership(factor_V, sizes, names, move_tol=0.1, static_tol=1e-3):
    """Which factors move which blocks, from single-factor transitions in the block basis.

    factor_V: list of (N_f, a, a) (one per factor, in the block basis U); sizes: block sizes.
    Block b is static when its strongest per-dim motion is below static_tol times the largest
    per-dim motion of any block; otherwise factor f moves it when f's motion there is at least
    move_tol times the block's strongest factor's. A block moved by exactly one factor is
    owned by it; by several, shared. `disjoint` = no shared block and every factor owns at
    least one block. A merged block (two factors' blocks taken together) is shared, so merging
    cannot raise this score. Returns a JSON-ready dict."""
    sizes = [int(s) for s in sizes]
    motion = np.stack([block_motion(V, sizes) for V in factor_V])          # (F, B)
    per_dim = motion / np.array(sizes)[None]
    top = per_dim.max() if per_dim.size else 0.0
    owned = {n: [] for n in names}
    shared, static = [], []
    for b in range(len(sizes)):
        if top <= 0 or per_dim[:, b].max() < static_tol * top:
            static.append(b)
            continue
        movers = [names[f] for f in np.nonzero(motion[:, b] >= move_tol * motion[:, b].max())[0]]
        if len(movers) == 1:
            owned[movers[0]].append(b)
        else:
            shared.append(b)
    return {
        "factor_blocks": owned,
        "factor_dims": {n: int(sum(sizes[b] for b in owned[n])) for n in names},
        "shared_blocks": shared,
        "static_blocks": static,
        "static_dims": int(sum(sizes[b] for b in static)),
        "disjoint": bool(not shared and all(owned[n] for n in names)),
        "factor_block_motion": {n: [float(x) for x in motion[f]] for f, n in enumerate(names)},
        "move_tol": move_tol,
        "static_tol": static_tol,
    }
