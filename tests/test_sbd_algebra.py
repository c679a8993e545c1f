"""Algebraic SBD (msp.sbd_algebra) on planted families with known answers (tests/sbd_planted.py):
M = P B P^-1 with a hidden basis P (condition number 1..1e3) and B block diagonal."""

import json

import numpy as np
import pytest

from msp import sbd_algebra as A
from msp.cli import main as msp_main
from sbd_planted import ISSUE_SPEC, largest_principal_angle_sin, planted_family

NAMES = ["f0", "f1", "f2"]


def true_owners(fam):
    """{factor name: sorted true block indices}, static block indices."""
    owners = {n: [] for n in NAMES[:len(fam["factors"])]}
    static = []
    for b, (kind, factor, _) in enumerate(fam["spec"]):
        (static if kind == "id" else owners[NAMES[factor]]).append(b)
    return owners, static


def distance_to_span(F, span):
    """sin of the largest angle between the columns' span of F and its projection on span(span)."""
    Q, _ = np.linalg.qr(span)
    Qf, _ = np.linalg.qr(F)
    return float(np.linalg.norm(Qf - Q @ (Q.T @ Qf), 2))


def match_blocks(fam, dec, tol):
    """Map each found block to the true block (or the union of the true blocks of one kind, for
    blocks that repeat) whose span holds it to `tol` (sin of the largest principal angle)."""
    P, truth = fam["P"], fam["blocks"]
    found = [dec.U[:, s] for s in A.block_slices(dec.block_sizes)]
    mapping = []
    for F in found:
        angles = []
        for block in truth:
            span = P[:, block]
            angles.append(largest_principal_angle_sin(F, span) if F.shape[1] == span.shape[1] else np.inf)
        best = int(np.argmin(angles))
        mapping.append((best, angles[best]))
    return mapping


def test_gram_equals_the_sum_of_explicit_kronecker_products():
    rng = np.random.default_rng(0)
    M = rng.standard_normal((4, 3, 3))
    eye = np.eye(3)
    K = [np.kron(m.T, eye) - np.kron(eye, m) for m in M]       # vec(XM - MX) = K vec(X), column-major
    X = rng.standard_normal((3, 3))
    np.testing.assert_allclose(K[0] @ X.reshape(-1, order="F"), (X @ M[0] - M[0] @ X).reshape(-1, order="F"))
    np.testing.assert_allclose(A.commutator_gram(M), sum(k.T @ k for k in K) / 4, atol=1e-12)


@pytest.mark.parametrize("cond", [1.0, 30.0, 1e3])
def test_issue_family_noise_free_blocks_subspaces_and_owners_exact(cond):
    """The issue's family (seven 2x2 rotations at distinct frequencies + 2 identity dims, 3
    factors, 3,200 matrices + 320 per factor, 16x16): exact block sizes, every rotation block's
    subspace to 1e-6, the identity dims inside the static subspace, the factor map exact."""
    fam = planted_family(cond=cond, seed=1)
    dec = A.algebraic_sbd(fam["M"])
    assert sorted(dec.block_sizes) == [1, 1] + [2] * 7
    assert dec.commutant_dim == 7 * 2 + 4 and dec.gap > 1e3
    static_span = fam["P"][:, [14, 15]]
    mapping = match_blocks(fam, dec, 1e-6)
    for (true, angle), F in zip(mapping, [dec.U[:, s] for s in A.block_slices(dec.block_sizes)]):
        if F.shape[1] == 2:
            assert angle < 1e-6
        else:  # a static dim: any line of the identity part is a finest block
            assert distance_to_span(F, static_span) < 1e-6
    V = [np.linalg.solve(dec.U[None], f @ dec.U[None]) for f in fam["factors"]]
    own = A.factor_ownership(V, dec.block_sizes, NAMES)
    owners, _ = true_owners(fam)
    found_true = {n: sorted(mapping[b][0] for b in own["factor_blocks"][n]) for n in NAMES}
    assert found_true == owners and own["shared_blocks"] == [] and own["static_dims"] == 2 and own["disjoint"]
    # deterministic: the same answer bit for bit
    again = A.algebraic_sbd(fam["M"])
    assert again.block_sizes == dec.block_sizes and np.array_equal(again.U, dec.U)


def test_32x32_scalings_rotations_repeated_blocks_and_identity_dims():
    """Real 1x1 scalings, 2x2 rotations, two isomorphic rotation blocks (same frequency, same
    factor: their sum is not unique, each copy is a finest block), identity dims; cond 1e3."""
    spec = ([("scale", 0, 0.3), ("scale", 0, 0.8), ("scale", 1, 0.5), ("scale", 2, 1.1)]
            + [("rot", 0, 1.0), ("rot", 1, 0.7), ("rot", 1, 1.9), ("rot", 2, 1.4), ("rot", 2, 2.6), ("rot", 0, 2.2),
               ("rot", 2, 0.5), ("rot", 0, 1.6)]
            + [("rot", 1, 1.2), ("rot", 1, 1.2)]                       # repeated isomorphic blocks
            + [("id", None, 0)] * 8)
    fam = planted_family(spec, n_all=3200, n_factor=64, cond=1e3, seed=2)
    assert fam["M"].shape == (3200, 32, 32)
    dec = A.algebraic_sbd(fam["M"])
    assert sorted(dec.block_sizes) == [1] * 12 + [2] * 10
    # the commutant: R for each scaling, C for each rotation, M_2(C) for the pair, M_8(R) for the identity dims
    assert dec.commutant_dim == 4 + 8 * 2 + 8 + 64
    P = fam["P"]
    pair = P[:, 20:24]
    static = P[:, 24:32]
    for s, size in zip(A.block_slices(dec.block_sizes), dec.block_sizes):
        F = dec.U[:, s]
        if distance_to_span(F, pair) < 1e-6 or distance_to_span(F, static) < 1e-6:
            continue  # one copy of a repeated block: any finest split of the isotypic part is right
        angles = [largest_principal_angle_sin(F, P[:, b]) for b in fam["blocks"][:12] if len(b) == size]
        assert min(angles) < 1e-6
    V = np.linalg.solve(dec.U[None], fam["M"] @ dec.U[None])
    mask = np.zeros((32, 32), bool)
    for s in A.block_slices(dec.block_sizes):
        mask[s, s] = True
    assert np.abs(V[:, ~mask]).max() < 1e-6 * np.abs(V).max()


# Measured on the issue's family (seeds 0-2, 3,200 + 320 matrices 16x16); noise = Gaussian
# entries of std (noise x the RMS entry of the family) added to every matrix. Block sizes stay
# exact up to:   cond(P) = 1: 5e-2 (breaks at 1e-1);  10: 1e-2 (breaks at 3e-2);
#                100: 1e-3 (breaks at 3e-3);          1e3: 3e-5 (1e-4 is borderline: exact on
#                three families, not on a fourth; breaks at 3e-4),
# i.e. roughly noise x cond(P) < 1e-1: the hidden basis' conditioning amplifies the noise.
# Past the limit the method returns one block with a gap below 10 (it says it sees no
# structure) rather than a wrong partition. The factor map (owned dims 6/4/4, 2 static dims,
# nothing shared) is exact wherever the sizes are, except at cond 1e3, where it holds at 1e-5
# and fails from 3e-5 on some seeds (the static and slow blocks pick up the amplified noise
# and are counted as shared).
@pytest.mark.parametrize("cond,size_noise,owner_noise", [(1.0, 5e-2, 5e-2), (10.0, 1e-2, 1e-2),
                                                         (100.0, 1e-3, 1e-3), (1e3, 3e-5, 1e-5)])
def test_noisy_families_keep_exact_block_sizes_up_to_the_measured_level(cond, size_noise, owner_noise):
    """Largest noise at which sizes stay exact (see the table above), every lower level of the
    sweep 1e-6..1e-1 exact too, and the factor map at its own measured level."""
    for level in [x for x in (1e-6, 1e-5, 1e-4, 1e-3, 1e-2) if x < size_noise] + [size_noise]:
        fam = planted_family(cond=cond, noise=level, n_factor=10, seed=0)
        dec = A.algebraic_sbd(fam["M"])
        assert sorted(dec.block_sizes) == [1, 1] + [2] * 7, (cond, level)
    fam = planted_family(cond=cond, noise=owner_noise, seed=0)
    dec = A.algebraic_sbd(fam["M"])
    V = [np.linalg.solve(dec.U[None], f @ dec.U[None]) for f in fam["factors"]]
    own = A.factor_ownership(V, dec.block_sizes, NAMES)
    assert own["factor_dims"] == {"f0": 6, "f1": 4, "f2": 4} and own["static_dims"] == 2 and own["disjoint"]


@pytest.mark.parametrize("noise", [0.0, 1e-3])
def test_an_irreducible_3x3_block_is_not_split_by_noise(noise):
    """A real-type irreducible block (3x3 rotations about a moving axis: only scalars commute
    with it) stays whole: its restricted commutant elements are scalar plus noise, and noise
    must not be read as distinct eigenvalues."""
    spec = [("so3", 0, 1.0), ("rot", 1, 1.3), ("scale", 2, 0.5), ("id", None, 0), ("id", None, 0)]
    fam = planted_family(spec, n_all=1000, n_factor=4, cond=10.0, noise=noise, seed=6)
    dec = A.algebraic_sbd(fam["M"])
    assert sorted(dec.block_sizes) == [1, 1, 1, 2, 3] and dec.commutant_dim == 1 + 2 + 1 + 4
    three = dec.U[:, A.block_slices(dec.block_sizes)[dec.block_sizes.index(3)]]
    assert largest_principal_angle_sin(three, fam["P"][:, :3]) < (1e-6 if noise == 0 else 1e-2)


def test_the_identity_alone_splits_nothing_in_any_basis():
    """A family with no commutant beyond the identity is one block, also when checked in a
    non-orthogonal basis (the authors' U), where I's eigenvalues differ by rounding only."""
    rng = np.random.default_rng(7)
    M = rng.standard_normal((300, 8, 8))
    U = rng.standard_normal((8, 8))
    assert A.finest_sizes(M, U, [8]) == [8]


def test_irreducible_family_is_one_block_and_scalar_family_is_all_ones():
    rng = np.random.default_rng(3)
    dense = rng.standard_normal((200, 6, 6))
    dec = A.algebraic_sbd(dense)
    assert dec.block_sizes == [6] and dec.commutant_dim == 1
    scalar = np.eye(5) * rng.uniform(0.5, 2, (50, 1, 1))
    assert A.algebraic_sbd(scalar).block_sizes == [1] * 5


def test_finest_sizes_splits_a_merged_partition():
    fam = planted_family(n_factor=4, seed=4)
    dec = A.algebraic_sbd(fam["M"])
    merged = [dec.block_sizes[0] + dec.block_sizes[1]] + dec.block_sizes[2:]
    assert A.finest_sizes(fam["M"], dec.U, merged) == dec.block_sizes
    assert A.finest_sizes(fam["M"], dec.U, dec.block_sizes) == dec.block_sizes


def test_msp_sbd_cli_on_an_ill_conditioned_planted_family(tmp_path):
    """`msp sbd` end to end: sbd.json and U.npy, finest blocks and the exact factor map."""
    fam = planted_family(n_all=800, n_factor=80, cond=1e3, seed=5)
    path = tmp_path / "family.npz"
    np.savez(path, M=fam["M"], a=fam["factors"][0], b=fam["factors"][1], c=fam["factors"][2])
    with pytest.raises(SystemExit) as done:
        msp_main(["sbd", "--matrices", str(path), "--key", "M", "--factor", "a=a", "--factor", "b=b",
                  "--factor", "c=c", "--out", str(tmp_path / "out")])
    assert done.value.code == 0
    info = json.loads((tmp_path / "out" / "sbd.json").read_text())
    U = np.load(tmp_path / "out" / "U.npy")
    assert sorted(info["block_sizes"]) == [1, 1] + [2] * 7 and info["finest"] and info["commutant_dim"] == 18
    assert info["factor_dims"] == {"a": 6, "b": 4, "c": 4} and info["shared_blocks"] == [] and info["static_dims"] == 2
    assert info["finest_and_disjoint"] and info["offblock_energy_after"] < 1e-12 < 0.5 < info["offblock_energy_before"]
    sizes = info["block_sizes"]
    assert all(len(info["blocks"][b]) == sizes[b] for b in info["factor_blocks"]["a"])
    assert U.shape == (16, 16) and np.array_equal(U, A.algebraic_sbd(fam["M"]).U)
    with pytest.raises(SystemExit) as done:
        msp_main(["sbd", "--matrices", str(path), "--key", "nope", "--out", str(tmp_path / "bad")])
    assert done.value.code == 1 and not (tmp_path / "bad").exists()


def test_msp_sbd_hand_picked_blocks_and_bad_flags(tmp_path, capsys):
    """--blocks overrides the blocks found (and is reported as not finest when it merges);
    malformed --blocks / --factor stop with the flag named."""
    fam = planted_family(n_all=400, n_factor=40, cond=10.0, seed=8)
    path = tmp_path / "family.npz"
    np.savez(path, M=fam["M"], a=fam["factors"][0])
    merged = json.dumps([list(range(4))] + [[i] for i in range(4, 16)])
    with pytest.raises(SystemExit) as done:
        msp_main(["sbd", "--matrices", str(path), "--key", "M", "--blocks", merged, "--out", str(tmp_path / "out")])
    assert done.value.code == 0
    info = json.loads((tmp_path / "out" / "sbd.json").read_text())
    assert info["hand_picked"] and info["block_sizes"] == [4] + [1] * 12 and not info["finest"]
    for flags, message in [(["--blocks", "[[0,1],"], "--blocks: not JSON"), (["--blocks", "[0, 1]"], "--blocks: expected"),
                           (["--factor", "rotation"], "expected NAME=KEY")]:
        with pytest.raises(SystemExit) as done:
            msp_main(["sbd", "--matrices", str(path), "--key", "M", "--out", str(tmp_path / "x"), *flags])
        assert done.value.code == 2 and message in capsys.readouterr().err
