"""Simultaneous block diagonalization (SBD) of fitted transitions (docs/evaluation.md).

After training, the per-sequence transitions M* of many sequences should share one block
structure: there is a single change of basis U such that every V = U^-1 M U is block
diagonal, each block carrying one factor of variation. This module
1. learns U by minimising the block-diagonalization loss of V (the authors' procedure);
2. finds the blocks AUTOMATICALLY from the learned basis (the authors pick them by hand):
   see `find_blocks` for the rule;
3. scores the result: fraction of off-block energy before/after, and a factor-to-block
   assignment score from single-factor transition maps;
4. drives the whole thing on a model + sequence generators (`run_sbd`), including the
   "disentangle" roll-outs in which M* is solved on one block only.

Conventions: M acts from the right (H_{t+1} = H_t M), so with H' = H U the transition in the
new basis is V = U^-1 M U. The "energy map" of a set of transitions is the mean over samples
of (V - I)^2 elementwise; the heat maps of the figures are the mean of |V - I| (as the
authors plot them).
"""

from dataclasses import dataclass

import torch

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


def factor_block_assignment(factor_energy, blocks):
    """Assign each factor to the block holding most of its energy.

    factor_energy: (F, a, a) energy maps of single-factor transitions (in the learned basis).
    Returns (fractions (F, B): energy share of each diagonal block, assignment (F,) block
    index per factor, score = mean over factors of the assigned block's share, one_to_one =
    distinct factors got distinct blocks).
    """
    totals = factor_energy.sum(dim=(1, 2)).clamp_min(1e-300)  # (F,)
    fractions = torch.stack([factor_energy[:, b][:, :, b].sum(dim=(1, 2)) for b in blocks], dim=1) / totals[:, None]
    assignment = fractions.argmax(dim=1)
    score = float(fractions.gather(1, assignment[:, None]).mean())
    one_to_one = len(set(assignment.tolist())) == len(assignment)
    return fractions, assignment, score, one_to_one


def analyse_transitions(M, U, factor_M=None, max_blocks=None):
    """Everything SBD reports from collected transitions, as pure tensor math.

    M: (N, a, a) all-factor transitions; U: (a, a) learned basis; factor_M: list of (N_f, a, a)
    single-factor transitions or None. Returns a dict with blocks, perm, the before/after heat
    maps (after and components permuted so blocks are contiguous), off-block energies and,
    with factor_M, the assignment. "Before" uses the original basis with the partition that
    the same rule finds there when forced to the same number of blocks (the best comparable
    partition for that basis); "chance" is the off-block share of a uniform energy map.
    """
    a = M.shape[-1]
    V = change_basis(M, U)
    partition = find_blocks(block_affinity(V), max_blocks=max_blocks)
    blocks = partition.blocks
    blocks_before = find_blocks(block_affinity(M), n_blocks=partition.n_blocks).blocks
    perm = torch.tensor(block_permutation(blocks))
    out = {
        "blocks": blocks,
        "n_blocks": partition.n_blocks,
        "laplacian_eigenvalues": partition.eigenvalues,
        "blocks_before": blocks_before,
        "off_block_energy_before": off_block_energy(energy_map(M), blocks_before),
        "off_block_energy_after": off_block_energy(energy_map(V), blocks),
        "off_block_energy_chance": 1.0 - sum(len(b) ** 2 for b in blocks) / a ** 2,
        "bd_loss_before": float(block_diagonalization_loss(M)),
        "bd_loss_after": float(block_diagonalization_loss(V)),
        "perm": perm,
        "before": heat_map(M),
        "after": heat_map(V)[perm][:, perm],
    }
    if factor_M:
        factor_V = [change_basis(Mf, U) for Mf in factor_M]
        energies = torch.stack([energy_map(Vf) for Vf in factor_V])
        fractions, assignment, score, one_to_one = factor_block_assignment(energies, blocks)
        out.update(components=torch.stack([heat_map(Vf)[perm][:, perm] for Vf in factor_V]),
                   factor_block_fractions=fractions, factor_assignment=assignment,
                   factor_block_score=score, factor_one_to_one=one_to_one)
    return out


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
    """Counts and optimiser of one SBD run (defaults: docs/evaluation.md, 'Simultaneous block diagonalization')."""
    T: int = 10                    # frames of the sequences whose M* are collected
    T_cond: int = 2                # conditioning frames of the disentangle roll-outs
    batch_size: int = 32
    n_batches: int = 100
    component_batch_size: int = 10
    component_batches: int = 10
    epochs: int = 50
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
    U, losses = learn_best_change_of_basis(M, restarts=st.restarts, seed=st.seed, epochs=st.epochs, lr=st.lr,
                                           batch_size=st.u_batch_size)
    factors = list(generator.default_active_actions)
    factor_M = [collect_transitions(model, make_generator(split="train", T=st.T, seed=st.seed + 1 + f, active_actions=[f]),
                                    st.component_batch_size, st.component_batches) for f in factors]
    res = analyse_transitions(M, U, factor_M, max_blocks=st.max_blocks)
    names = [generator.factor_names[f] for f in factors]
    test = make_generator(split=disentangle_split, T=st.T, seed=st.seed, force_moving=True)
    device = next(model.parameters()).device
    arrays = disentangle_rollouts(model, U.float().to(device), res["blocks"], test.sample(1), st.T_cond)
    summary = {
        "blocks": res["blocks"],
        "off_block_energy_before": res["off_block_energy_before"],
        "off_block_energy_after": res["off_block_energy_after"],
        "factor_names": names,
        "factor_to_block": {n: int(b) for n, b in zip(names, res["factor_assignment"])},
        "factor_block_score": res["factor_block_score"],
        "factor_one_to_one": res["factor_one_to_one"],
        "factor_block_fractions": {n: [float(x) for x in row] for n, row in zip(names, res["factor_block_fractions"])},
        "n_blocks": res["n_blocks"],
        "blocks_before": res["blocks_before"],
        "off_block_energy_chance": res["off_block_energy_chance"],
        "bd_loss_before": res["bd_loss_before"],
        "bd_loss_after": res["bd_loss_after"],
        "bd_loss_per_epoch": losses,
        "laplacian_eigenvalues": res["laplacian_eigenvalues"],
        "n_matrices": int(len(M)),
        "U_condition_number": float(torch.linalg.cond(U)),  # a huge value flags a near-singular basis
        "settings": {k: v for k, v in vars(st).items()},
        "block_rule": "spectral clustering of mean |V|^T|V|, number of blocks by the eigengap of the "
                      "normalized Laplacian (msp.sbd.find_blocks)",
    }
    arrays.update(before=res["before"].numpy(), after=res["after"].numpy(), perm=res["perm"].numpy(),
                  U=U.numpy(), components=res["components"].numpy())
    return summary, arrays
