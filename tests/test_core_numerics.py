"""Latent dynamics stay true float32 under bf16 autocast (CPU autocast emulates the GPU path),
and a singular least-squares system is reported instead of propagating silently."""

import pytest
import torch
from torch.overrides import TorchFunctionMode

from msp import dynamics
from msp.models import MODELS, build_model
from msp.train import NonFiniteLossError, train
from toys import RotatingBlobs, small_config

# every model whose prediction goes through a transition matrix M (neural_trans rolls out
# with its predictor network, which may run bf16 like every network; contrastive: no roll-out)
MATRIX_MODELS = ["lstsq", "lstsq_multi", "lstsq_rec", "holstsq", "neuralM", "neuralM_latentpred"]


class LatentProducts(TorchFunctionMode):
    """Records every matmul / solve (the networks use conv and linear layers only): the input
    dtypes, and whether autocast and TF32 were on when it ran."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", str(func))
        if any(key in name for key in ("matmul", "bmm", "solve")):
            dtypes = {a.dtype for a in args if isinstance(a, torch.Tensor)}
            self.calls.append((name, dtypes, torch.is_autocast_enabled("cpu"), torch.backends.cuda.matmul.allow_tf32))
        return func(*args, **(kwargs or {}))

    def check_float32(self):
        assert self.calls, "no latent product was recorded"
        for name, dtypes, autocast_on, tf32 in self.calls:
            assert dtypes == {torch.float32}, (name, dtypes)
            assert not autocast_on, f"{name} ran under autocast"
            assert not tf32, f"{name} ran with TF32 allowed"


@pytest.fixture
def tf32_allowed():
    """The default speed settings on CUDA allow TF32 globally; the dynamics must switch it off."""
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    yield
    torch.backends.cuda.matmul.allow_tf32 = before


def test_solve_and_rollouts_are_float32_from_bf16_inputs(tf32_allowed):
    H = torch.randn(3, 6, 8, 4).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16), LatentProducts() as rec:
        M = dynamics.least_squares_transition(H)
        first = dynamics.rollout_first_order(H[:, -1], M.bfloat16(), 5)
        M2, A = dynamics.second_order_transition(H)
        second = dynamics.rollout_second_order(H[:, -1], M2.bfloat16(), A.bfloat16(), 5)
    assert M.dtype == M2.dtype == A.dtype == first.dtype == second.dtype == torch.float32
    rec.check_float32()
    assert torch.backends.cuda.matmul.allow_tf32  # restored on exit
    # float64 in, float64 out (known-answer tests use double)
    assert dynamics.rollout_first_order(H[:, -1].double(), M.double(), 2).dtype == torch.float64


@pytest.mark.parametrize("name", MATRIX_MODELS)
def test_transition_and_rollout_stay_float32_under_bf16_autocast(name, tf32_allowed):
    torch.manual_seed(0)
    model = build_model(small_config(name, 3), (3, 32, 32))
    assert MODELS[name].has_transition
    xs = torch.rand(2, model.T_cond + 2, 3, 32, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        H = model.encode(xs[:, : model.T_cond])
        assert H.dtype == torch.bfloat16  # the networks do run bf16 here
        with LatentProducts() as rec:
            state = model.infer_transition(xs[:, : model.T_cond])
            H_pred = model.rollout(state, 4)
        loss, _ = model.loss(xs, diagnostics=True)
    rec.check_float32()
    for key in ("M", "A"):
        if key in state:
            assert state[key].dtype == torch.float32, key
    assert H_pred.dtype == torch.float32
    loss.backward()  # gradients flow through the float32 dynamics into the bf16 networks


def test_change_of_basis_product_is_float32(tf32_allowed):
    model = build_model(small_config("lstsq", 3), (3, 32, 32))
    model.set_change_of_basis(torch.linalg.qr(torch.randn(4, 4))[0])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model.encode(torch.rand(2, 2, 3, 32, 32)).dtype == torch.float32


def test_singular_systems_are_recorded_per_sequence():
    H = torch.randn(4, 3, 8, 4)
    H[2] = 0  # Gram matrix of sequence 2 is exactly zero
    with dynamics.watch_singular() as singular:
        dynamics.least_squares_transition(H)
    assert dynamics.singular_sequences(singular.flags) == [2]
    H = torch.randn(4, 5, 8, 4)
    H[1, 2] = 0  # second order: the pair operator of frames 2 -> 3 of sequence 1 is undetermined
    with dynamics.watch_singular() as singular:
        dynamics.second_order_transition(H)
    assert dynamics.singular_sequences(singular.flags) == [1]
    with dynamics.watch_singular() as singular:
        dynamics.least_squares_transition(torch.randn(4, 3, 8, 4))
    assert dynamics.singular_sequences(singular.flags) == []


def test_training_reports_the_step_and_sequences_of_a_singular_solve(tmp_path, monkeypatch):
    from toys import toy_config

    encode, calls = MODELS["lstsq"].encode, []

    def encode_with_dead_sequences(self, xs):
        H = encode(self, xs)
        calls.append(1)
        if len(calls) == 6:  # the 6th training step (step 5): sequences 1 and 6 encode to zero
            H = H * torch.tensor([1.0, 0, 1, 1, 1, 1, 0, 1]).view(8, 1, 1, 1)
        return H

    monkeypatch.setattr(MODELS["lstsq"], "encode", encode_with_dead_sequences)
    with pytest.raises(NonFiniteLossError, match=r"step 5 .*singular least-squares system at step 5 in sequences \[1, 6\]"):
        train(toy_config(iterations=12, log_every=3), tmp_path / "run", sequences=RotatingBlobs(seed=3), progress=False)
