"""SBD with known answers: block-diagonal families hidden by a change of basis are found again."""


import numpy as np
import pytest
import torch

from msp import sbd
from fake_world import FakeModel, FakeSequences

TRUE_BLOCKS = [[0, 1], [2, 3], [4]]


def block_family(n, seed, scale_spread=0.5):
    """(n, 5, 5) float64: two independent 2x2 rotations (angles in [-1, 1]) and a 1x1 scale."""
    g = torch.Generator().manual_seed(seed)
    theta = torch.rand(n, 2, generator=g, dtype=torch.float64) * 2 - 1
    B = torch.zeros(n, 5, 5, dtype=torch.float64)
    for f, (i, j) in enumerate([(0, 1), (2, 3)]):
        c, s = theta[:, f].cos(), theta[:, f].sin()
        B[:, i, i], B[:, i, j], B[:, j, i], B[:, j, j] = c, -s, s, c
    B[:, 4, 4] = torch.exp(scale_spread * torch.randn(n, generator=g, dtype=torch.float64))
    return B


def hide(B, P):
    """M = P B P^-1, so that V = U^-1 M U with U = P is block diagonal again."""
    return P @ B @ torch.linalg.inv(P)


def as_sets(blocks):
    return sorted(tuple(sorted(b)) for b in blocks)


def test_bd_loss_lower_for_block_diagonal_and_equal_to_trace():
    B = block_family(64, 0)
    dense = hide(B, torch.randn(5, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64))
    assert sbd.block_diagonalization_loss(B) < 0.6 * sbd.block_diagonalization_loss(dense)
    # the normalized Laplacian is PSD, so its nuclear norm is its trace: a - sum_i A_ii / D_ii
    S = dense.abs()
    A = S.transpose(-2, -1) @ S
    trace = (5 - (torch.diagonal(A, dim1=-2, dim2=-1) / (A.sum(-1) + 1e-10)).sum(-1)).mean()
    assert float(sbd.block_diagonalization_loss(dense)) == pytest.approx(float(trace), rel=1e-6)
    assert float(sbd.block_diagonalization_loss(torch.eye(5)[None].repeat(3, 1, 1))) == pytest.approx(0, abs=1e-6)


def test_find_blocks_returns_the_true_partition_of_a_permuted_family():
    perm = torch.tensor([3, 0, 4, 2, 1])  # coordinate perm[k] of B becomes coordinate k
    V = block_family(100, 2)[:, perm][:, :, perm]
    expected = [sorted(int(k) for k in range(5) if int(perm[k]) in block) for block in TRUE_BLOCKS]
    partition = sbd.find_blocks(sbd.block_affinity(V))
    assert as_sets(partition.blocks) == as_sets(expected)
    assert partition.n_blocks == 3 and partition.eigenvalues[2] < 1e-9 < partition.eigenvalues[3]
    order = sbd.block_permutation(partition.blocks)
    assert sorted(order) == list(range(5))
    assert sbd.off_block_energy(sbd.energy_map(V), partition.blocks) == pytest.approx(0, abs=1e-12)


def test_diagonal_family_gives_singletons_and_bounds_hold():
    V = torch.diag_embed(torch.rand(20, 4, generator=torch.Generator().manual_seed(0)) + 0.5)
    assert sbd.find_blocks(sbd.block_affinity(V)).blocks == [[0], [1], [2], [3]]
    dense = torch.rand(20, 4, 4, generator=torch.Generator().manual_seed(1))
    assert sbd.find_blocks(sbd.block_affinity(dense)).blocks == [[0, 1, 2, 3]]
    assert sbd.find_blocks(sbd.block_affinity(dense), n_blocks=4).n_blocks == 4


def test_triangular_coupling_is_seen_by_the_affinity():
    V = block_family(50, 3)
    V[:, 4, 0] = 0.3  # coordinate 4 feeds coordinate 0: not a direct sum of [0, 1] and [4]
    W = sbd.block_affinity(V)
    assert W[0, 4] > 0.1 and W[4, 0] == W[0, 4]
    partition = sbd.find_blocks(W, n_blocks=2)
    assert partition.eigenvalues[2] > 0.01  # only two exactly separate components remain
    assert as_sets(partition.blocks) == [(0, 1, 4), (2, 3)]


def test_authors_method_recovers_hidden_blocks():
    P = torch.randn(5, 5, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    M = hide(block_family(320, 5), P)
    U, losses = sbd.learn_change_of_basis(M, epochs=50, seed=0)
    assert losses[-1] < losses[0]
    bd = sbd.block_diagonalize(M, method="authors", epochs=50, seed=0)
    assert sorted(bd.block_sizes) == [1, 2, 2] and bd.finest
    result, maps = sbd.score_blocks(M, bd)
    # each learned block spans exactly one hidden block: P^-1 U is block-permutation shaped
    Q = torch.linalg.solve(P, bd.U)
    for block in bd.blocks:
        energy = torch.stack([(Q[true][:, block] ** 2).sum() for true in TRUE_BLOCKS])
        assert energy.max() / energy.sum() > 0.99
    assert result["offblock_energy_after"] < 0.01 < 0.2 < result["offblock_energy_before"]
    assert result["bd_loss_after"] < result["bd_loss_before"]
    assert torch.equal(maps["after"], sbd.heat_map(sbd.change_basis(M, bd.U)))


def test_restarts_keep_the_lowest_loss():
    M = hide(block_family(64, 6), torch.randn(5, 5, generator=torch.Generator().manual_seed(7), dtype=torch.float64))
    finals = [float(sbd.block_diagonalization_loss(sbd.change_basis(M, sbd.learn_change_of_basis(M, epochs=3, seed=s)[0])))
              for s in (0, 1, 2)]
    U, _ = sbd.learn_best_change_of_basis(M, restarts=3, seed=0, epochs=3)
    assert float(sbd.block_diagonalization_loss(sbd.change_basis(M, U))) == pytest.approx(min(finals))


def test_hand_picked_blocks_are_scored_honestly():
    """Merging the two rotation blocks by hand keeps the off-block energy at zero, but the
    merged block is shared by both factors and the partition is not the finest."""
    P = torch.randn(5, 5, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    B = block_family(200, 8)
    M = hide(B, P)
    singles = []
    for f in range(3):  # single-factor families: only factor f moves
        Bf = B.clone()
        for g in range(3):
            if g != f:
                Bf[:, TRUE_BLOCKS[g]] = 0
                Bf[:, TRUE_BLOCKS[g], TRUE_BLOCKS[g]] = 1
        singles.append(hide(Bf, P))
    names = ["rot_a", "rot_b", "scale"]
    bd = sbd.block_diagonalize(M)
    good, _ = sbd.score_blocks(M, bd, singles, names)
    assert good["finest_and_disjoint"] and sorted(good["block_sizes"]) == [1, 2, 2]
    rotations = [b for b in bd.blocks if len(b) == 2]
    scale = [b for b in bd.blocks if len(b) == 1]
    merged = sbd.block_diagonalize(M, blocks=[rotations[0] + rotations[1], scale[0]])
    assert merged.hand_picked and merged.block_sizes == [4, 1] and merged.finest_block_sizes == [2, 2, 1]
    bad, _ = sbd.score_blocks(M, merged, singles, names)
    assert bad["offblock_energy_after"] < 1e-20  # the energy cannot tell merged from finest...
    assert not bad["finest"] and bad["shared_blocks"] == [0] and not bad["disjoint"]  # ...the new score can
    assert bad["factor_blocks"] == {"rot_a": [], "rot_b": [], "scale": [1]}
    with pytest.raises(ValueError, match="each column exactly once"):
        sbd.block_diagonalize(M, blocks=[[0, 1], [1, 2, 3, 4]])
    with pytest.raises(ValueError, match="unknown SBD method"):
        sbd.block_diagonalize(M, method="magic")


@pytest.mark.parametrize("method", ["algebraic", "authors"])
def test_run_sbd_on_a_fake_model_finds_one_block_per_factor(method):
    P = torch.randn(5, 5, generator=torch.Generator().manual_seed(4), dtype=torch.float64)

    def make_generator(*, split, T, seed, **options):
        return FakeSequences(T=T, seed=seed, basis=P, **options)

    settings = sbd.SBDSettings(T=4, T_cond=2, batch_size=32, n_batches=10, component_batch_size=10,
                               component_batches=2, method=method, epochs=50, restarts=1)
    summary, arrays = sbd.run_sbd(FakeModel(gain=1.0), make_generator, settings)
    assert sorted(summary["block_sizes"]) == [1, 2, 2] and summary["method"] == method
    assert summary["factor_names"] == ["rot_a", "rot_b", "scale"]
    assert summary["finest_and_disjoint"] and summary["shared_blocks"] == [] and summary["static_blocks"] == []
    assert summary["factor_dims"] == {"rot_a": 2, "rot_b": 2, "scale": 1}
    assert summary["offblock_energy_after"] < 0.01 < summary["offblock_energy_before"]
    assert arrays["disentangle"].shape == (3, 2, 1, 6, 5)  # (blocks, predicted frames, C, H, W)
    assert arrays["components"].shape == (3, 5, 5) and arrays["U"].shape == (5, 5)
    assert arrays["perm"].tolist() == list(range(5))
    # V - I is the sum of the per-block (V_b - I), so the one-step motions of the block rows add up
    last = arrays["disentangle_cond"][-1]
    motion = arrays["disentangle_all"][0] - last
    assert np.linalg.norm((arrays["disentangle"][:, 0] - last).sum(0) - motion) < 0.05 * np.linalg.norm(motion)
    assert arrays["disentangle_all"].shape == (2, 1, 6, 5) and arrays["disentangle_cond"].shape == (2, 1, 6, 5)
    np.testing.assert_allclose(arrays["disentangle_all"], arrays["disentangle_target"], atol=1e-3)
