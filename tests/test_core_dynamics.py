"""Known answers for the least-squares core (docs/method.md, 'Least squares')."""

import math

import torch

from msp import dynamics

torch.set_default_dtype(torch.float32)


def planted(N=4, T=3, m=12, a=6, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    M = torch.randn(N, a, a, generator=g, dtype=dtype) / math.sqrt(a) + torch.eye(a, dtype=dtype)
    H0 = torch.randn(N, m, a, generator=g, dtype=dtype)
    H = dynamics.rollout_first_order(H0, M, T - 1)
    return torch.cat([H0[:, None], H], dim=1), M  # (N, T, m, a)


def test_least_squares_recovers_planted_transition():
    H, M = planted()
    M_hat = dynamics.least_squares_transition(H.float())
    assert M_hat.dtype == torch.float32
    torch.testing.assert_close(M_hat.double(), M, atol=1e-5, rtol=1e-5)


def test_least_squares_stays_float32_under_autocast():
    H, M = planted(dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        M_hat = dynamics.least_squares_transition(H)  # matmuls inside must not drop to bf16
    assert M_hat.dtype == torch.float32
    torch.testing.assert_close(M_hat, M, atol=1e-4, rtol=1e-4)


def test_block_variant_recovers_planted_block_diagonal_transition():
    g = torch.Generator().manual_seed(1)
    N, K, b, m = 3, 4, 2, 10
    blocks = torch.randn(N, K, b, b, generator=g, dtype=torch.float64) * 0.3 + torch.eye(b, dtype=torch.float64)
    M = dynamics.block_diagonal(blocks)
    H0 = torch.randn(N, m, K * b, generator=g, dtype=torch.float64)
    H = torch.cat([H0[:, None], dynamics.rollout_first_order(H0, M, 2)], dim=1)
    M_hat = dynamics.block_least_squares_transition(H.float(), K)
    torch.testing.assert_close(M_hat.double(), M, atol=1e-5, rtol=1e-5)
    off_block = M_hat * (1 - dynamics.block_diagonal(torch.ones(1, K, b, b)))
    assert off_block.abs().max() == 0


def test_block_diagonal_layout():
    blocks = torch.arange(8.0).view(1, 2, 2, 2)
    expected = torch.tensor([[0, 1, 0, 0], [2, 3, 0, 0], [0, 0, 4, 5], [0, 0, 6, 7.0]])
    torch.testing.assert_close(dynamics.block_diagonal(blocks)[0], expected)


def test_partial_transition_is_identity_outside_active_columns():
    H, M = planted(a=6)
    active = [1, 4]
    M_hat = dynamics.partial_least_squares_transition(H.float(), active)
    inactive = [0, 2, 3, 5]
    torch.testing.assert_close(M_hat[:, inactive][:, :, inactive], torch.eye(4).expand(4, 4, 4))
    assert M_hat[:, inactive][:, :, active].abs().max() == 0
    expected = dynamics.least_squares_transition(H[..., active].float())
    torch.testing.assert_close(M_hat[:, active][:, :, active], expected)


def test_second_order_recovers_planted_acceleration():
    # M_{t+1} = M_t A with H_{t+1} = H_t M_t: rotations with a constant angular acceleration.
    g = torch.Generator().manual_seed(2)
    N, T, m, a = 3, 6, 8, 4

    def rot(theta):  # (N,) -> (N, a, a): two 2-D rotation blocks
        c, s = torch.cos(theta), torch.sin(theta)
        R = torch.zeros(N, a, a, dtype=torch.float64)
        for i in (0, 2):
            R[:, i, i], R[:, i, i + 1], R[:, i + 1, i], R[:, i + 1, i + 1] = c, -s, s, c
        return R

    w, acc = torch.rand(N, generator=g, dtype=torch.float64), torch.rand(N, generator=g, dtype=torch.float64) * 0.1
    A = rot(acc)
    M_t = rot(w)
    H = [torch.randn(N, m, a, generator=g, dtype=torch.float64)]
    for _ in range(T - 1):
        H.append(H[-1] @ M_t)
        M_t = M_t @ A
    H = torch.stack(H, dim=1)
    M_last, A_hat = dynamics.second_order_transition(H.float())
    torch.testing.assert_close(A_hat.double(), A, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(M_last.double(), rot(w + (T - 2) * acc), atol=1e-5, rtol=1e-5)
    future = dynamics.rollout_second_order(H[:, -1], M_last.double(), A, 3)
    expected = [H[:, -1] @ M_t]
    for _ in range(2):
        M_t = M_t @ A
        expected.append(expected[-1] @ M_t)
    torch.testing.assert_close(future, torch.stack(expected, 1), atol=1e-5, rtol=1e-5)


def test_gradients_flow_through_the_solve():
    H = torch.randn(2, 3, 5, 3, dtype=torch.float64, requires_grad=True)

    def fit(H):  # float64 gradcheck of the same algebra (the float32 cast is the identity here)
        N, T, m, a = H.shape
        A, B = H[:, :-1].reshape(N, -1, a), H[:, 1:].reshape(N, -1, a)
        return torch.linalg.solve(A.mT @ A, A.mT @ B)

    assert torch.autograd.gradcheck(fit, (H,))
    Hf = H.detach().float().requires_grad_()
    dynamics.least_squares_transition(Hf).sum().backward()
    assert Hf.grad is not None and torch.isfinite(Hf.grad).all() and Hf.grad.abs().sum() > 0


def reference_bd_loss(M):
    """Independent computation with numpy-style loops over samples."""
    total = 0.0
    for Mi in M.double():
        W = Mi.abs().T @ Mi.abs()
        d = W.sum(1)
        Dm = torch.diag(1 / torch.sqrt(d + 1e-10))
        L = Dm @ (torch.diag(d) - W) @ Dm
        total += torch.linalg.svd(L).S.sum()
    return total / len(M)


def test_block_diagonalization_loss_matches_independent_computation():
    M = torch.randn(5, 6, 6)
    torch.testing.assert_close(dynamics.block_diagonalization_loss(M).double(), reference_bd_loss(M), rtol=1e-4, atol=1e-4)
    W = (M.abs().mT @ M.abs()).mean(0, keepdim=True)
    aligned = dynamics.normalized_laplacian_nuclear_norm(W[0])
    torch.testing.assert_close(dynamics.block_diagonalization_loss(M, alignment=True), aligned)


def test_block_diagonalization_loss_prefers_block_diagonal():
    g = torch.Generator().manual_seed(3)
    blocks = torch.randn(16, 4, 2, 2, generator=g)
    block_diag = dynamics.block_diagonal(blocks)
    dense = torch.randn(16, 8, 8, generator=g)
    assert dynamics.block_diagonalization_loss(block_diag) < dynamics.block_diagonalization_loss(dense) - 1.0


def test_orthogonality_loss_zero_for_rotations():
    Q, _ = torch.linalg.qr(torch.randn(4, 5, 5))
    assert dynamics.orthogonality_loss(Q) < 1e-10
    assert dynamics.orthogonality_loss(2 * Q) > 1


def test_info_nce_prefers_aligned_views():
    z = torch.randn(8, 16)
    assert dynamics.info_nce([z, z], 0.1) < dynamics.info_nce([z, torch.randn(8, 16)], 0.1)
