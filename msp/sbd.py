"""Simultaneous block diagonalization (SBD) of fitted transitions (docs/evaluation.md).

After training, the per-sequence transitions M* of many sequences should share one block
structure: there is a single change of basis U such that every V = U^-1 M U is block
diagonal, each block carrying one factor of variation. This module
1. finds U and the blocks (`block_diagonalize`): by default algebraically, the finest common
   blocks from the commutant of the family (msp.sbd_algebra, docs/sbd.md); or with the
   authors' procedure (`method="authors"`: Adam on U minimising the block-diagonalization
   loss, blocks then read off the learned basis by `find_blocks`); either may be overridden by
   hand-picked blocks (as the authors did for their figures);
2. scores the result (`score_blocks`): off-block energy before/after, whether the blocks are
   the finest the family allows, and from single-factor transitions which factor owns which
   blocks (shared and static blocks reported), a score that merging blocks cannot fool;
3. drives the whole thing on a model + sequence generators (`run_sbd`), including the
   "disentangle" roll-outs in which M* is solved on one block only.

Conventions: M acts from the right (H_{t+1} = H_t M), so with H' = H U the transition in the
new basis is V = U^-1 M U. The "energy map" of a set of transitions is the mean over samples
of (V - I)^2 elementwise; the heat maps of the figures are the mean of |V - I| (as the
authors plot them).
"""

from dataclasses import dataclass, field

import numpy as np
import torch

from msp import sbd_algebra
from msp.dynamics import block_diagonalization_loss  # mean over matrices by default
from msp.eval_protocols import require_transition, transition_frames


def change_basis(M, U):
    """V = U^-1 M U. M: (N, a, a), U: (a, a) -> V: (N, a, a) (linear solve, no explicit inverse)."""
    return torch.linalg.solve(U.expand_as(M), M) @ U


def learn_change_of_basis(M, epochs=50, lr=0.1, batch_size=32, seed=0):
    """Learn one invertible U minimising the mean BD loss of U^-1 M U (authors' recipe:
    orthogonal init, Adam lr 0.1, batch 32, 50 epochs). M: (N, a, a) -> (U: (a, a), losses: list
    of the mean loss per epoch). Runs with gradients on M's device and dtype. The loss has
    local minima (e.g. a 1x1 block left coupled to a rotation block); see learn_best_change_of_basis."""
    gen = torch.Generator().manual_seed(seed)
    a = M.shape[-1]
    U0 = torch.empty(a, a, dtype=torch.float64)
    torch.nn.init.orthogonal_(U0, generator=gen)
    U = torch.nn.Parameter(U0.to(M))
    optimizer = torch.optim.Adam([U], lr=lr)
    losses = []
    with torch.enable_grad():
        for _ in range(epochs):
            order = torch.randperm(len(M), generator=gen).to(M.device)
            total = 0.0
            for start in range(0, len(M), batch_size):
                batch = M[order[start:start + batch_size]]
                loss = block_diagonalization_loss(change_basis(batch, U))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += loss.item() * len(batch)
            losses.append(total / len(M))
    return U.detach(), losses


def energy_map(V):
    """Mean over samples of (V - I)^2 elementwise. V: (N, a, a) -> (a, a)."""
    eye = torch.eye(V.shape[-1], dtype=V.dtype, device=V.device)
    return ((V - eye) ** 2).mean(0)


def heat_map(V):
    """Mean over samples of |V - I| (the authors' SBD figure). V: (N, a, a) -> (a, a)."""
    eye = torch.eye(V.shape[-1], dtype=V.dtype, device=V.device)
    return (V - eye).abs().mean(0)


def block_affinity(V):
    """Coupling between latent coordinates. V: (N, a, a) -> W = mean over samples of |V|^T |V|: (a, a).

    W_ij sums |V_ki| |V_kj| over rows k: coordinates i and j must share a block when some
    coordinate k receives from both (this also catches triangular couplings, which cannot be
    split into a direct sum). It is the affinity inside the BD loss, averaged over samples. The
    diagonal (squared column norms) acts as a self-loop, so that a coordinate that is its own
    1x1 block is a component of its own for the normalized Laplacian.
    """
    S = V.abs()
    return (S.transpose(-2, -1) @ S).mean(0)


def _kmeans_rows(X, k, iters=100):
    """Deterministic k-means on the rows of X (n, d): farthest-point init, Lloyd updates.
    Returns labels (n,). Used on row-normalised spectral embeddings, where clusters are
    nearly orthogonal unit vectors, so farthest-point seeding lands one seed per cluster."""
    centers = [X[torch.argmax(X.norm(dim=1))]]
    for _ in range(1, k):
        dist = torch.cdist(X, torch.stack(centers)).min(dim=1).values
        centers.append(X[torch.argmax(dist)])
    centers = torch.stack(centers)
    labels = torch.cdist(X, centers).argmin(dim=1)
    for _ in range(iters):
        centers = torch.stack([X[labels == c].mean(0) if (labels == c).any() else centers[c] for c in range(k)])
        new = torch.cdist(X, centers).argmin(dim=1)
        if torch.equal(new, labels):
            break
        labels = new
    return labels


def _labels_to_blocks(labels):
    """labels (a,) -> list of blocks (sorted index lists), ordered by their smallest index."""
    blocks = {}
    for i, c in enumerate(labels.tolist()):
        blocks.setdefault(c, []).append(i)
    return sorted(blocks.values(), key=lambda b: b[0])


@dataclass
class BlockPartition:
    blocks: list        # list[list[int]], each sorted, ordered by smallest index
    eigenvalues: list   # normalized-Laplacian spectrum, ascending (for the eigengap)
    n_blocks: int


def find_blocks(W, n_blocks=None, max_blocks=None):
    """Partition latent coordinates into blocks from an affinity W (a, a) (see block_affinity).

    Rule (spectral clustering with the eigengap; Ng, Jordan & Weiss 2002; von Luxburg 2007):
    1. normalized Laplacian L = I - D^-1/2 W D^-1/2, D = diag(row sums of W) (+1e-12 * max so
       isolated coordinates stay finite); eigenvalues 0 = l_1 <= ... <= l_a. A perfectly
       block-diagonal family with K blocks has exactly K zero eigenvalues;
    2. number of blocks K = argmax_k (l_{k+1} - l_k) over k = 1..min(max_blocks, a - 1)
       (unless n_blocks is given; K = a when every eigenvalue is 0, i.e. diagonal V). The
       diagonal of W is a self-loop, so a 1x1 block is a component with eigenvalue 0;
       weak links between groups give small eigenvalues and are cut by the eigengap;
    3. rows of the first K eigenvectors, normalised to unit length, clustered by k-means
       (deterministic farthest-point seeding): coordinates in one cluster form one block.
    Returns a BlockPartition.
    """
    a = W.shape[0]
    W = W.to(torch.float64)
    degree = W.sum(1)
    inv_sqrt = torch.rsqrt(degree + 1e-12 * degree.max().clamp_min(1e-300))
    L = torch.eye(a, dtype=W.dtype) - inv_sqrt[:, None] * W * inv_sqrt[None, :]
    eigenvalues, eigenvectors = torch.linalg.eigh(L)
    if n_blocks is None and float(eigenvalues[-1]) < 1e-9:
        n_blocks = a  # no coupling at all (every V diagonal): every coordinate is its own block
    elif n_blocks is None:
        k_max = min(max_blocks or a - 1, a - 1)
        gaps = eigenvalues[1:k_max + 1] - eigenvalues[:k_max]
        n_blocks = int(torch.argmax(gaps)) + 1 if a > 1 else 1
    if not 1 <= n_blocks <= a:
        raise ValueError(f"find_blocks: n_blocks must be in [1, {a}], got {n_blocks}")
    embedding = eigenvectors[:, :n_blocks]
    embedding = embedding / embedding.norm(dim=1, keepdim=True).clamp_min(1e-12)
    labels = _kmeans_rows(embedding, n_blocks)
    blocks = _labels_to_blocks(labels)
    return BlockPartition(blocks=blocks, eigenvalues=eigenvalues.tolist(), n_blocks=len(blocks))


def block_permutation(blocks):
    """Permutation (a,) that makes the blocks contiguous: the concatenation of the blocks."""
    return [i for block in blocks for i in block]


def block_mask(blocks, a):
    """Boolean (a, a) mask, True where row and column lie in the same block."""
    label = torch.empty(a, dtype=torch.long)
    for b, block in enumerate(blocks):
        label[block] = b
    return label[:, None] == label[None, :]


def off_block_energy(E, blocks):
    """Fraction of an energy map E (a, a) outside the diagonal blocks (0 = perfectly block diagonal)."""
    total = E.sum()
    return float(E[~block_mask(blocks, E.shape[0])].sum() / total) if total > 0 else 0.0


def learn_best_change_of_basis(M, restarts=1, seed=0, **kwargs):
    """learn_change_of_basis from `restarts` orthogonal inits (seeds seed, seed+1, ...); keeps the
    U with the lowest final mean BD loss. restarts=1 is the authors' recipe."""
    best = None
    for r in range(restarts):
        U, losses = learn_change_of_basis(M, seed=seed + r, **kwargs)
        with torch.no_grad():
            final = float(block_diagonalization_loss(change_basis(M, U)))
        if best is None or final < best[2]:
            best = (U, losses, final)
    return best[0], best[1]


METHODS = ("algebraic", "authors")


@dataclass
class BlockDiagonalization:
    U: torch.Tensor            # (a, a) float64; the blocks are consecutive groups of its columns
    block_sizes: list          # in the order of U's columns
    method: str
    hand_picked: bool          # blocks given by the user rather than found
    commutant_dim: int         # of the family (whatever the method): its finest structure
    gap: float                 # confidence of commutant_dim (eigenvalue ratio at the cut)
    finest_block_sizes: list   # the given blocks split as far as the commutant allows
    bd_loss_per_epoch: list = field(default_factory=list)   # authors' method only
    commutant_eigenvalues: list = field(default_factory=list)

    @property
    def blocks(self):
        """Contiguous index lists of the blocks in U's columns."""
        return [list(range(s.start, s.stop)) for s in sbd_algebra.block_slices(self.block_sizes)]

    @property
    def finest(self):
        return self.finest_block_sizes == self.block_sizes


def _check_partition(blocks, a):
    flat = sorted(i for block in blocks for i in block)
    if flat != list(range(a)) or any(not block for block in blocks):
        raise ValueError(f"hand-picked blocks {blocks} must split the {a} columns of U into non-empty "
                         f"groups, each column exactly once (indices 0..{a - 1})")


def block_diagonalize(M, method="algebraic", blocks=None, seed=0, epochs=50, lr=0.1, batch_size=32,
                      restarts=1, max_blocks=None):
    """Change of basis and blocks of a family. M: (N, a, a) -> BlockDiagonalization.

    method "algebraic" (default): msp.sbd_algebra.algebraic_sbd, deterministic, the finest
    blocks. "authors": Adam on U (learn_best_change_of_basis with epochs, lr, batch_size,
    restarts), blocks by find_blocks on the learned basis (max_blocks bounds their number).
    blocks: hand-picked blocks, lists of column indices of the method's basis (the algebraic
    U, or the authors' learned U before its columns are regrouped), overriding the blocks found.
    U's columns are reordered so that every block is contiguous."""
    if method not in METHODS:
        raise ValueError(f"unknown SBD method {method!r}: use one of {', '.join(METHODS)}")
    M = M.detach().to(torch.float64).cpu()
    a = M.shape[-1]
    comm = sbd_algebra.commutant(M.numpy())
    losses = []
    if method == "algebraic":
        dec = sbd_algebra.algebraic_sbd(M.numpy(), seed=seed, comm=comm)
        U, found = torch.from_numpy(dec.U), [list(range(s.start, s.stop)) for s in sbd_algebra.block_slices(dec.block_sizes)]
    else:
        U, losses = learn_best_change_of_basis(M, restarts=restarts, seed=seed, epochs=epochs, lr=lr,
                                               batch_size=batch_size)
        found = find_blocks(block_affinity(change_basis(M, U)), max_blocks=max_blocks).blocks
    if blocks is not None:
        _check_partition(blocks, a)
    chosen = [sorted(int(i) for i in b) for b in (blocks if blocks is not None else found)]
    U = U[:, block_permutation(chosen)].contiguous()
    sizes = [len(b) for b in chosen]
    finest = sbd_algebra.refine_blocks(U.numpy(), sizes, comm, sbd_algebra.cluster_tolerance(comm), seed=seed)[1]
    return BlockDiagonalization(U=U, block_sizes=sizes, method=method, hand_picked=blocks is not None,
                                commutant_dim=comm.dim, gap=comm.gap, finest_block_sizes=finest,
                                bd_loss_per_epoch=losses, commutant_eigenvalues=comm.eigenvalues.tolist())


def score_blocks(M, bd, factor_M=None, factor_names=None, move_tol=0.1, static_tol=1e-3):
    """Everything SBD reports about a block diagonalization of collected transitions.

    M: (N, a, a) all-factor transitions; bd: BlockDiagonalization; factor_M: list of (N_f, a, a)
    single-factor transitions (or None), named by factor_names. Returns (summary: JSON-ready
    dict, maps: dict of tensors before/after (a, a) heat maps [+ components (F, a, a)]).
    "Before" uses the original basis with the partition that find_blocks finds there when
    forced to the same number of blocks (the best comparable partition for that basis);
    "chance" is the off-block share of a uniform energy map. Claim 5's test is
    `finest_and_disjoint`: the blocks cannot be split further and each factor owns its own
    blocks (msp.sbd_algebra.factor_ownership)."""
    M = M.detach().to(torch.float64).cpu()
    a = M.shape[-1]
    V = change_basis(M, bd.U)
    blocks = bd.blocks
    blocks_before = find_blocks(block_affinity(M), n_blocks=len(blocks)).blocks
    summary = {
        "method": bd.method,
        "hand_picked": bd.hand_picked,
        "block_sizes": bd.block_sizes,
        "blocks": blocks,
        "n_blocks": len(blocks),
        "finest_block_sizes": bd.finest_block_sizes,
        "finest": bd.finest,
        "commutant_dim": bd.commutant_dim,
        "gap": bd.gap,
        "offblock_energy_before": off_block_energy(energy_map(M), blocks_before),
        "offblock_energy_after": off_block_energy(energy_map(V), blocks),
        "offblock_energy_chance": 1.0 - sum(len(b) ** 2 for b in blocks) / a ** 2,
        "blocks_before": blocks_before,
        "bd_loss_before": float(block_diagonalization_loss(M)),
        "bd_loss_after": float(block_diagonalization_loss(V)),
        "n_matrices": int(len(M)),
        "U_condition_number": float(torch.linalg.cond(bd.U)),  # a huge value flags a near-singular basis
    }
    maps = {"before": heat_map(M), "after": heat_map(V)}
    if factor_M:
        names = list(factor_names or [f"factor{f}" for f in range(len(factor_M))])
        factor_V = [change_basis(Mf.detach().to(torch.float64).cpu(), bd.U) for Mf in factor_M]
        owners = sbd_algebra.factor_ownership([Vf.numpy() for Vf in factor_V], bd.block_sizes, names,
                                              move_tol=move_tol, static_tol=static_tol)
        summary.update(factor_names=names, **owners,
                       finest_and_disjoint=bool(bd.finest and owners["disjoint"]))
        maps["components"] = torch.stack([heat_map(Vf) for Vf in factor_V])
    return summary, maps


@torch.no_grad()
def collect_transitions(model, generator, batch_size, n_batches):
    """M* of n_batches * batch_size sequences: -> (S, a, a) float64 on the CPU."""
    Ms = []
    for _ in range(n_batches):
        xs = generator.sample(batch_size)
        Ms.append(model.infer_transition(transition_frames(model, xs))["M"].double().cpu())
    return torch.cat(Ms)


@torch.no_grad()
def disentangle_rollouts(model, U, blocks, xs, T_cond):
    """docs/evaluation.md, 'Simultaneous block diagonalization': in the basis U, solve M* on one block's coordinates at a time
    (identity elsewhere) and roll out one sequence. xs: (1, T, C, H, W) -> dict of numpy arrays
    disentangle (B, S, C, H, W) with S = T - T_cond predicted frames, disentangle_all (S, ...)
    with every coordinate solved, disentangle_cond (T_cond, ...), disentangle_target (S, ...).
    The model's basis and fixed indices are reset afterwards."""
    n_rolls = xs.shape[1] - T_cond
    model.set_change_of_basis(U)
    try:
        rows = []
        for block in blocks:
            model.set_fix_indices(block)
            rows.append(model.predict(xs[:1, :T_cond], n_rolls)[0])
        model.set_fix_indices(None)
        full = model.predict(xs[:1, :T_cond], n_rolls)[0]
    finally:
        model.set_fix_indices(None)
        model.set_change_of_basis(None)
    return {"disentangle": torch.stack(rows).float().cpu().numpy(),
            "disentangle_all": full.float().cpu().numpy(),
            "disentangle_cond": xs[0, :T_cond].float().cpu().numpy(),
            "disentangle_target": xs[0, T_cond:].float().cpu().numpy()}


@dataclass
class SBDSettings:
    """Counts and method of one SBD run (counts: docs/evaluation.md, 'Simultaneous block diagonalization')."""
    T: int = 10                    # frames of the sequences whose M* are collected
    T_cond: int = 2                # conditioning frames of the disentangle roll-outs
    batch_size: int = 32
    n_batches: int = 100
    component_batch_size: int = 10
    component_batches: int = 10
    method: str = "algebraic"      # algebraic | authors (block_diagonalize)
    blocks: list | None = None     # hand-picked blocks overriding the ones found
    epochs: int = 50               # authors' method: learning U
    lr: float = 0.1
    u_batch_size: int = 32
    restarts: int = 1
    max_blocks: int | None = None
    seed: int = 1234


def run_sbd(model, make_generator, settings: SBDSettings, disentangle_split="test"):
    """The whole SBD evaluation of a model.

    make_generator(split=..., T=..., seed=..., **options) -> SequenceGenerator; the caller
    binds the dataset and the training-distribution options (sbd_data_options).
    Returns (summary: JSON-ready dict, arrays: dict of numpy arrays for sbd_maps.npz).
    """
    require_transition(model, "simultaneous block diagonalization")
    st = settings
    generator = make_generator(split="train", T=st.T, seed=st.seed)
    M = collect_transitions(model, generator, st.batch_size, st.n_batches)
    bd = block_diagonalize(M, method=st.method, blocks=st.blocks, seed=st.seed, epochs=st.epochs, lr=st.lr,
                           batch_size=st.u_batch_size, restarts=st.restarts, max_blocks=st.max_blocks)
    factors = list(generator.default_active_actions)
    factor_M = [collect_transitions(model, make_generator(split="train", T=st.T, seed=st.seed + 1 + f, active_actions=[f]),
                                    st.component_batch_size, st.component_batches) for f in factors]
    names = [generator.factor_names[f] for f in factors]
    summary, maps = score_blocks(M, bd, factor_M, names)
    test = make_generator(split=disentangle_split, T=st.T, seed=st.seed, force_moving=True)
    device = next(model.parameters()).device
    arrays = disentangle_rollouts(model, bd.U.float().to(device), bd.blocks, test.sample(1), st.T_cond)
    summary.update(bd_loss_per_epoch=bd.bd_loss_per_epoch, commutant_eigenvalues=bd.commutant_eigenvalues,
                   settings={k: v for k, v in vars(st).items()}, block_rule=BLOCK_RULES[st.method])
    # U's columns are already grouped block by block, so the maps need no permutation
    arrays.update(before=maps["before"].numpy(), after=maps["after"].numpy(), perm=np.arange(M.shape[-1]),
                  U=bd.U.numpy(), components=maps["components"].numpy())
    return summary, arrays


BLOCK_RULES = {
    "algebraic": "finest common invariant subspaces from the commutant of the transitions "
                 "(msp.sbd_algebra.algebraic_sbd, docs/sbd.md)",
    "authors": "U by Adam on the block-diagonalization loss (authors' recipe); blocks by spectral "
               "clustering of mean |V|^T|V| with the eigengap (msp.sbd.find_blocks)",
}
