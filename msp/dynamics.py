"""Latent dynamics of MSP as pure, batched, differentiable functions (docs/method.md).

Latents H: (N, T, m, a); a transition M: (N, a, a) acts from the right, H_{t+1} = H_t M.
The latent dynamics (Gram products, solves, powers of M, roll-outs) always run in true
float32 — autocast disabled and TF32 off inside them — whatever precision the networks run
in: bf16 round-off in M is amplified by its powers (M^k over a roll-out). The solves use
solve_ex so that no host-device synchronisation happens inside a step; a singular system
is recorded per sequence (`watch_singular`) and reported by the caller.
"""

import contextlib
import contextvars

import torch


@contextlib.contextmanager
def float32_math(device_type: str):
    """Inside: autocast off and no TF32 for CUDA matmuls, so float32 products are float32."""
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.autocast(device_type=device_type, enabled=False):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """bf16/fp16 -> float32; float32 and float64 unchanged."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


class SingularSystems:
    """Per-sequence flags of singular normal equations, kept on the device (no host sync)."""

    def __init__(self):
        self.flags: torch.Tensor | None = None  # (N,) bool

    def add(self, info: torch.Tensor):
        """info: (N, ...) solve_ex status (nonzero: singular) -> OR-ed into (N,) flags."""
        bad = (info != 0).reshape(info.shape[0], -1).any(dim=1) if info.dim() else (info != 0).reshape(1)
        self.flags = bad if self.flags is None or self.flags.shape != bad.shape else self.flags | bad


_singular_recorder: contextvars.ContextVar[SingularSystems | None] = contextvars.ContextVar(
    "singular_recorder", default=None)


@contextlib.contextmanager
def watch_singular():
    """Record, per sequence, whether any least-squares system solved inside was singular.

    with watch_singular() as singular: M = least_squares_transition(H)
    singular.flags: (N,) bool tensor, or None when nothing was solved.
    """
    recorder = SingularSystems()
    token = _singular_recorder.set(recorder)
    try:
        yield recorder
    finally:
        _singular_recorder.reset(token)


def singular_sequences(flags: torch.Tensor | None) -> list[int]:
    """(N,) flags -> indices of the sequences whose system was singular (a host sync)."""
    return [] if flags is None else torch.nonzero(flags).flatten().tolist()


def solve_normal_equations(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """Least-squares X minimising ||A X - B||_F via (A^T A) X = A^T B.

    A: (..., r, a), B: (..., r, b) -> X: (..., a, b), at least float32. A singular
    system (solve_ex's info != 0) is recorded for the enclosing `watch_singular`.
    """
    with float32_math(A.device.type):
        A, B = at_least_float32(A), at_least_float32(B)
        At = A.transpose(-2, -1)
        X, info = torch.linalg.solve_ex(At @ A, At @ B)  # Gram (..., a, a) and (..., a, b)
    recorder = _singular_recorder.get()
    if recorder is not None:
        recorder.add(info)
    return X


def least_squares_transition(H: torch.Tensor) -> torch.Tensor:
    """H: (N, T, m, a) -> M*: (N, a, a) fitted jointly on all consecutive pairs.

    Rows of H_1..H_{T-1} are stacked into A ((T-1) m, a), those of H_2..H_T into B.
    """
    N, T, m, a = H.shape
    A = H[:, :-1].reshape(N, (T - 1) * m, a)
    B = H[:, 1:].reshape(N, (T - 1) * m, a)
    return solve_normal_equations(A, B)


def partial_least_squares_transition(H: torch.Tensor, active: list[int]) -> torch.Tensor:
    """H: (N, T, m, a) -> M: (N, a, a), solved on the `active` columns only, identity elsewhere.

    Used by the disentanglement roll-outs of SBD (one block of coordinates moves at a time).
    """
    N, T, m, a = H.shape
    idx = torch.as_tensor(sorted(active), device=H.device, dtype=torch.long)
    M_active = least_squares_transition(H.index_select(-1, idx))  # (N, |active|, |active|)
    M = torch.eye(a, device=H.device, dtype=M_active.dtype).repeat(N, 1, 1)
    M[:, idx[:, None], idx[None, :]] = M_active
    return M


def block_least_squares_transition(H: torch.Tensor, n_blocks: int) -> torch.Tensor:
    """Fixed-block MSP: H: (N, T, m, a) -> block-diagonal M: (N, a, a) with n_blocks equal blocks.

    Each block's transition is fitted by least squares on its own a / n_blocks columns.
    """
    N, T, m, a = H.shape
    if a % n_blocks:
        raise ValueError(f"dim_a = {a} is not divisible by the number of fixed blocks K = {n_blocks}")
    b = a // n_blocks
    Hb = H.reshape(N, T, m, n_blocks, b).permute(0, 3, 1, 2, 4)  # (N, K, T, m, b)
    A = Hb[:, :, :-1].reshape(N, n_blocks, (T - 1) * m, b)
    B = Hb[:, :, 1:].reshape(N, n_blocks, (T - 1) * m, b)
    blocks = solve_normal_equations(A, B)  # (N, K, b, b)
    return block_diagonal(blocks)


def block_diagonal(blocks: torch.Tensor) -> torch.Tensor:
    """blocks: (N, K, b, b) -> (N, K b, K b) block-diagonal matrices."""
    N, K, b, _ = blocks.shape
    eye = torch.eye(K, device=blocks.device, dtype=blocks.dtype)
    # out[n, k, i, l, j] = eye[k, l] * blocks[n, k, i, j]
    out = eye[None, :, None, :, None] * blocks[:, :, :, None, :]  # (N, K, b, K, b)
    return out.reshape(N, K * b, K * b)


def second_order_transition(H: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Second-order MSP (n_order = 2): H: (N, T, m, a) -> (M_last, A), both (N, a, a).

    First one operator per consecutive pair, M_t: H_t -> H_{t+1} (fitted on the m rows of
    that pair alone); the first of them is dropped, as in the authors' model; then one
    acceleration A with M_{t+1} = M_t A, fitted jointly over time. Needs T >= 4.
    """
    N, T, m, a = H.shape
    if T < 4:
        raise ValueError(f"second-order MSP needs at least 4 conditioning frames, got T_cond = {T}")
    pair_ops = solve_normal_equations(H[:, :-1], H[:, 1:])[:, 1:]  # (N, T-2, a, a)
    A = solve_normal_equations(
        pair_ops[:, :-1].reshape(N, -1, a),  # ((T-3) a, a)
        pair_ops[:, 1:].reshape(N, -1, a),
    )
    return pair_ops[:, -1], A


def rollout_first_order(H_last: torch.Tensor, M: torch.Tensor, n_rolls: int) -> torch.Tensor:
    """H_last: (N, m, a), M: (N, a, a) -> (N, n_rolls, m, a) with entries H_last M^k, k = 1..n.

    At least float32 whatever the inputs' dtype or the autocast state (module docstring).
    """
    with float32_math(H_last.device.type):
        dtype = torch.promote_types(torch.promote_types(H_last.dtype, M.dtype), torch.float32)
        out, h, M = [], H_last.to(dtype), M.to(dtype)
        for _ in range(n_rolls):
            h = h @ M  # (N, m, a)
            out.append(h)
        return torch.stack(out, dim=1)


def rollout_second_order(H_last: torch.Tensor, M: torch.Tensor, A: torch.Tensor, n_rolls: int) -> torch.Tensor:
    """At every step M <- M A, then H <- H M. H_last: (N, m, a) -> (N, n_rolls, m, a), at least float32."""
    with float32_math(H_last.device.type):
        dtype = torch.promote_types(torch.promote_types(H_last.dtype, M.dtype), torch.promote_types(A.dtype, torch.float32))
        out, h, M, A = [], H_last.to(dtype), M.to(dtype), A.to(dtype)
        for _ in range(n_rolls):
            M = M @ A  # (N, a, a)
            h = h @ M  # (N, m, a)
            out.append(h)
        return torch.stack(out, dim=1)


def normalized_laplacian_nuclear_norm(W: torch.Tensor) -> torch.Tensor:
    """W: (..., a, a) non-negative symmetric affinities -> (...) nuclear norm of D^-1/2 (D - W) D^-1/2.

    D = diag(row sums of W); 1e-10 is added before the square root (docs/evaluation.md, 'Simultaneous block diagonalization').
    """
    d = W.sum(dim=-1)  # (..., a)
    L = torch.diag_embed(d) - W
    s = torch.rsqrt(d + 1e-10)
    L = s[..., :, None] * L * s[..., None, :]
    return torch.linalg.svdvals(L).sum(dim=-1)


def block_diagonalization_loss(M: torch.Tensor, alignment: bool = False) -> torch.Tensor:
    """M: (N, a, a) -> scalar. With S = |M|, the nuclear norm of the normalized Laplacian of
    S^T S: of the batch mean of S^T S when `alignment`, else averaged over samples."""
    S = M.abs()
    StS = S.transpose(-2, -1) @ S  # (N, a, a)
    if alignment:
        return normalized_laplacian_nuclear_norm(StS.mean(dim=0))
    return normalized_laplacian_nuclear_norm(StS).mean()


def orthogonality_loss(M: torch.Tensor) -> torch.Tensor:
    """M: (N, a, a) -> mean over samples of ||I - M M^T||_F^2."""
    eye = torch.eye(M.shape[-1], device=M.device, dtype=M.dtype)
    return ((eye - M @ M.transpose(-2, -1)) ** 2).sum(dim=(-2, -1)).mean()


def internal_losses(H: torch.Tensor, M: torch.Tensor) -> dict[str, torch.Tensor]:
    """The authors' logged diagnostics of a first-order fit, H: (N, T, m, a), M: (N, a, a).

    loss_internal_0: sum of squared differences H_{t+1} - H_t;
    loss_internal_T: sum of squared residuals H_{t+1} - H_t M.
    """
    with float32_math(H.device.type):
        H, M = at_least_float32(H), at_least_float32(M)
        H0, H1 = H[:, :-1], H[:, 1:]
        return {
            "loss_internal_0": ((H1 - H0) ** 2).sum(),
            "loss_internal_T": ((H1 - H0 @ M[:, None]) ** 2).sum(),
        }


def transition_diagnostics(M: torch.Tensor, alignment: bool = False) -> dict[str, torch.Tensor]:
    """loss_bd and loss_orth of a batch of transitions (logged, never added to the loss)."""
    M = M.detach().float()
    M = torch.where(torch.isfinite(M), M, 0.0)  # a NaN step is reported by the trainer, not by the SVD
    return {"loss_bd": block_diagonalization_loss(M, alignment), "loss_orth": orthogonality_loss(M)}


def info_nce(views: list[torch.Tensor], temperature: float) -> torch.Tensor:
    """Contrastive loss of the SimCLR/CPC baselines: views: list of V tensors (N, D) -> scalar.

    Cosine similarities / temperature; row i's positive is the same sample in the next
    view (cyclically); the sample itself is excluded.
    """
    z = torch.nn.functional.normalize(torch.cat(views, dim=0), dim=1)  # (V N, D)
    n, total = views[0].shape[0], z.shape[0]
    logits = z @ z.T / temperature
    logits = logits.masked_fill(torch.eye(total, dtype=torch.bool, device=z.device), float("-inf"))
    target = (torch.arange(total, device=z.device) + n) % total
    return torch.nn.functional.cross_entropy(logits, target)
