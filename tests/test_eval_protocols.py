"""Prediction / equivariance / samples protocols on a fake linear world with known answers.

The fakes (tests/fake_world.py) follow the Model and Data APIs of docs/interfaces.md: frames
are (1, m, a) images that ARE latent matrices, moved by a known block-diagonal transition
hidden by a basis P.
"""

import math

import numpy as np
import pytest
import torch

from fake_world import M_ROWS, FakeModel, FakeSequences, orthogonal
from msp import eval_protocols as ep


def test_prediction_errors_match_a_hand_computation():
    model, T_cond = FakeModel(), 2
    errors = ep.prediction_errors(model, FakeSequences(T=6, seed=4), T_cond, batch_size=3, n_batches=2)
    assert errors.shape == (6, 4)
    again = FakeSequences(T=6, seed=4)
    xs = torch.cat([again.sample(3), again.sample(3)]).double().numpy()[:, :, 0]  # (6, T, m, a)
    for i in range(6):
        h = xs[i, 1]
        M = np.linalg.lstsq(xs[i, 0], xs[i, 1], rcond=None)[0]
        for k in range(4):
            h = h @ M
            expected = ((xs[i, 2 + k] - 0.9 * h) ** 2).sum()
            assert errors[i, k] == pytest.approx(expected, rel=1e-4)
    table = ep.summarize_prediction(errors)
    assert list(table.columns) == ["horizon", "mse", "mse_sem", "n_sequences"]
    assert table.horizon.tolist() == [1, 2, 3, 4] and (table.n_sequences == 6).all()
    np.testing.assert_allclose(table.mse, errors.mean(0))
    np.testing.assert_allclose(table.mse_sem, errors.std(0, ddof=1) / math.sqrt(6))


def test_perfect_model_has_zero_error_and_same_seed_same_sequences():
    errors = ep.prediction_errors(FakeModel(gain=1.0), FakeSequences(T=5, seed=1), 2, 4, 1)
    assert errors.max() < 1e-6
    a = ep.prediction_errors(FakeModel(), FakeSequences(T=5, seed=2), 2, 4, 2)
    b = ep.prediction_errors(FakeModel(), FakeSequences(T=5, seed=2), 2, 4, 2)
    np.testing.assert_array_equal(a, b)


def test_transition_fitted_on_more_frames_matches_a_hand_computation():
    model, T_cond, T = FakeModel(), 2, 6
    errors = ep.prediction_errors(model, FakeSequences(T=T, seed=4), T_cond, 3, 2, fit_frames=5)
    again = FakeSequences(T=T, seed=4)
    xs = torch.cat([again.sample(3), again.sample(3)]).double().numpy()[:, :, 0]  # (6, T, m, a)
    for i in range(6):
        A = xs[i, 0:4].reshape(-1, 5)  # pairs (0, 1) .. (3, 4): the first 5 frames
        B = xs[i, 1:5].reshape(-1, 5)
        M, h = np.linalg.lstsq(A, B, rcond=None)[0], xs[i, T_cond - 1]  # rolled from frame 1, not frame 4
        for k in range(T - T_cond):
            h = h @ M
            assert errors[i, k] == pytest.approx(((xs[i, T_cond + k] - 0.9 * h) ** 2).sum(), rel=1e-4)
    # with fit_frames = T_cond it is the protocol itself
    np.testing.assert_array_equal(ep.prediction_errors(model, FakeSequences(T=T, seed=4), T_cond, 3, 2, fit_frames=2),
                                  ep.prediction_errors(model, FakeSequences(T=T, seed=4), T_cond, 3, 2))


def test_more_frames_for_the_fit_beat_a_corrupted_conditioning_pair():
    class CorruptedFirstFrame(FakeSequences):  # frame 0 off the linear path: the 2-frame M* is wrong
        def sample(self, batch_size):
            xs = super().sample(batch_size)
            xs[:, 0] += 0.3 * torch.randn(xs[:, 0].shape, generator=self.gen)
            return xs
    model = FakeModel(gain=1.0)
    protocol = ep.prediction_errors(model, CorruptedFirstFrame(T=12, seed=2), 2, 8, 2)
    oracle = ep.prediction_errors(model, CorruptedFirstFrame(T=12, seed=2), 2, 8, 2, fit_frames=12)
    assert protocol.mean(0)[-1] > 1.0  # the wrong M*, raised to the 10th power
    assert oracle.mean(0)[-1] < 0.1 * protocol.mean(0)[-1]  # ten clean pairs outvote the corrupted one


def test_reconstruction_floor_is_the_decoder_on_the_true_latents():
    errors = ep.prediction_errors(FakeModel(gain=0.9), FakeSequences(T=5, seed=3), 2, 4, 1, reconstruct=True)
    xs = FakeSequences(T=5, seed=3).sample(4).double()[:, 2:, 0]  # (4, 3, m, a)
    np.testing.assert_allclose(errors, 0.01 * (xs ** 2).sum(dim=(2, 3)).numpy(), rtol=1e-4)  # |x - 0.9 x|^2


def test_diagnostics_refuse_what_they_cannot_do():
    class NeuralM(FakeModel):
        name = "neuralM"
    with pytest.raises(ValueError, match="least-squares model.*'neuralM'") as refused:
        ep.prediction_errors(NeuralM(), FakeSequences(T=5), 2, 2, 1, fit_frames=5)
    assert "lstsq_multi" in str(refused.value) and "holstsq" not in str(refused.value)  # second order is refused too
    with pytest.raises(ValueError, match="between T_cond=2 and .*T=5"):
        ep.prediction_errors(FakeModel(), FakeSequences(T=5), 2, 2, 1, fit_frames=6)
    with pytest.raises(ValueError, match="between T_cond=2"):
        ep.prediction_errors(FakeModel(), FakeSequences(T=5), 2, 2, 1, fit_frames=1)

    class SecondOrder(FakeModel):
        name = "holstsq"

        def infer_transition(self, xs_cond):
            return {**super().infer_transition(xs_cond), "A": None}
    with pytest.raises(ValueError, match="second order"):
        ep.prediction_errors(SecondOrder(), FakeSequences(T=5), 2, 2, 1, fit_frames=5)

    class NoDecoder(FakeModel):
        has_decoder, name = False, "cpc"
    with pytest.raises(ValueError, match="'cpc' has no decoder"):
        ep.prediction_errors(NoDecoder(), FakeSequences(T=5), 2, 2, 1, reconstruct=True)


def test_swap_rolls_every_key_but_H():
    state = {"H": torch.arange(4), "M": torch.arange(4) * 10, "A": torch.arange(4) * 100}
    swapped = ep.swap_transitions(state)
    assert swapped["H"].tolist() == [0, 1, 2, 3]
    assert swapped["M"].tolist() == [30, 0, 10, 20]  # sequence i gets sequence i-1's transition
    assert swapped["A"].tolist() == [300, 0, 100, 200]


def test_equivariance_equal_when_M_depends_only_on_g():
    P = orthogonal(5, 11)  # norm-preserving world (scale factor still)
    gen = FakeSequences(T=6, seed=5, basis=P, shared_transition=True, active_actions=[0, 1])
    Lp, Lp_equiv = ep.equivariance_errors(FakeModel(), gen, 2, batch_size=8, n_batches=3)
    assert Lp.shape == Lp_equiv.shape == (24, 4)
    assert Lp.mean() > 0.1  # the 0.9 gain makes real, non-zero errors (0.01 |x|^2)
    np.testing.assert_allclose(Lp_equiv, Lp, rtol=1e-3)


def test_equivariance_gap_when_M_depends_on_content():
    P = orthogonal(5, 11)
    gen = FakeSequences(T=6, seed=5, basis=P, shared_transition=True, active_actions=[0, 1])
    Lp, Lp_equiv = ep.equivariance_errors(FakeModel(twist=0.3, gain=1.0), gen, 2, batch_size=8, n_batches=3)
    assert Lp.max() < 1e-6  # its own M is exact for its own content
    assert (Lp_equiv.mean(0) > 0.3).all()  # the neighbour's M (same g) is not, at every horizon
    table = ep.summarize_equivariance(Lp, Lp_equiv)
    assert list(table.columns) == ["horizon", "Lp", "Lp_equiv", "n_sequences"]


def test_equivariance_redraws_the_shared_transition_after_every_batch():
    gen = FakeSequences(T=4, seed=0, shared_transition=True)
    draws = []
    gen.redraw_shared_transition = lambda real=gen.redraw_shared_transition: (draws.append(1), real())
    ep.equivariance_errors(FakeModel(), gen, 2, batch_size=2, n_batches=3)
    assert len(draws) == 3


def test_errors_name_the_problem():
    class NoTransition(FakeModel):
        has_transition, name = False, "neural_trans"
    with pytest.raises(ValueError, match="neural_trans"):
        ep.equivariance_errors(NoTransition(), FakeSequences(shared_transition=True), 2, 2, 1)
    with pytest.raises(ValueError, match="shared_transition=True"):
        ep.equivariance_errors(FakeModel(), FakeSequences(), 2, 2, 1)
    with pytest.raises(ValueError, match="nothing to predict"):
        ep.prediction_errors(FakeModel(), FakeSequences(T=2), 2, 2, 1)
    with pytest.raises(ValueError, match="no evaluation protocol"):
        ep.protocol_for("cifar")


def test_generated_samples_shapes():
    xs = FakeSequences(T=5, seed=3, shared_transition=True).sample(4)
    out = ep.generate_samples(FakeModel(), xs, 2)
    assert {k: v.shape for k, v in out.items()} == {
        "cond": (4, 2, 1, M_ROWS, 5), "target": (4, 3, 1, M_ROWS, 5),
        "pred": (4, 3, 1, M_ROWS, 5), "pred_equiv": (4, 3, 1, M_ROWS, 5)}


def test_evaluation_options_and_defaults():
    config = {"dataset": {"name": "mnist_accl", "options": {"range_a": [-0.2, 0.2], "max_T": 10,
                                                            "shared_transition": True}}}
    assert ep.evaluation_options(config, 20) == {"range_a": [-0.2, 0.2], "max_T": 20}
    assert ep.evaluation_options({"dataset": {"name": "3dshapes"}}, 8, force_moving=True) == {"force_moving": True}
    assert ep.default_n_batches("mnist", 16) == 62 and ep.default_n_batches("3dshapes", 32) == 157
    assert ep.protocol_for("mnist_accl").T_cond == 5 and ep.protocol_for("smallNORB").prediction_T == 6


def test_paired_difference_known_answer():
    a = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [4.0, np.nan]])  # a diverged roll-out: inf
    b = a + np.array([[1.0, -1.0], [3.0, -1.0], [1.0, -1.0], [3.0, 0.0]])
    table = ep.paired_difference(a, np.nan_to_num(b, nan=50.0))
    first = table.iloc[0]
    assert first["diff"] == 2.0 and first.share_a_lower == 1.0 and first.n_sequences == 4
    assert math.isclose(first.diff_sem, np.std([1, 3, 1, 3], ddof=1) / 2)
    assert math.isclose(first.low95, 2.0 - 1.96 * first.diff_sem) and math.isclose(first.high95, 2.0 + 1.96 * first.diff_sem)
    second = table.iloc[1]  # b beats a on three sequences, a's inf loses the fourth
    assert second.share_a_lower == 0.0 and second["diff"] == -np.inf and second.mse_a == np.inf
    with pytest.raises(ValueError, match="same sequences"):
        ep.paired_difference(a, a[:3])
