"""Trivial baselines (copy the last frame, the mean training frame): known answers on planted
data, run through the same protocol code as the models, the CLI and the gathered layout."""

import numpy as np
import pandas as pd
import pytest
import torch

from msp import eval_protocols as ep
from msp import tables, trivial_baselines
from fake_world import FakeSequences, run_msp


class RampSequences:
    """Planted frames: frame t of every sequence is the constant image (offset + slope * t),
    shape (1, 2, 3); offset and slope per sequence from `values`, cycled over the batch."""

    image_shape = (1, 2, 3)

    def __init__(self, T, values, shared_transition=False):
        self.T, self.values, self.shared_transition, self.drawn = T, values, shared_transition, 0

    def sample(self, n):
        rows = [self.values[(self.drawn + i) % len(self.values)] for i in range(n)]
        self.drawn += n
        t = torch.arange(self.T, dtype=torch.float32)
        level = torch.stack([off + slope * t for off, slope in rows])  # (n, T)
        return level[:, :, None, None, None].expand(n, self.T, *self.image_shape).clone()

    def redraw_shared_transition(self):
        pass


PIXELS = 6


def test_copy_last_on_static_sequences_is_exact():
    gen = FakeSequences(T=6, seed=0, active_actions=[])  # nothing moves: x_t = x_0
    errors = ep.prediction_errors(trivial_baselines.CopyLast(T_cond=2), gen, 2, batch_size=4, n_batches=2)
    assert errors.shape == (8, 4)
    np.testing.assert_array_equal(errors, 0.0)


def test_mean_frame_on_a_constant_dataset_is_exact():
    constant = RampSequences(T=5, values=[(0.7, 0.0)])
    mean = trivial_baselines.MeanFrame(2, trivial_baselines.mean_frame(constant, n_sequences=10, batch_size=3))
    np.testing.assert_allclose(mean.mean.numpy(), 0.7)
    errors = ep.prediction_errors(mean, RampSequences(T=5, values=[(0.7, 0.0)]), 2, batch_size=4, n_batches=1)
    np.testing.assert_allclose(errors, 0.0, atol=1e-12)


def test_known_errors_on_ramps():
    """Frame t = t (slope 1, offset 0): copy-last predicts T_cond - 1 = 1 at every horizon, so
    the error at horizon h is PIXELS * h^2; the mean over frames 0..5 is 2.5, so the mean-frame
    error at horizon h (frame h + 1) is PIXELS * (h + 1 - 2.5)^2."""
    T, Tc = 6, 2
    copy_last = ep.prediction_errors(trivial_baselines.CopyLast(Tc), RampSequences(T, [(0.0, 1.0)]), Tc, 3, 1)
    h = np.arange(1, T - Tc + 1)
    np.testing.assert_allclose(copy_last, np.tile(PIXELS * h**2, (3, 1)))
    mean = trivial_baselines.build("baseline_mean_frame", Tc, lambda: RampSequences(T, [(0.0, 1.0)]))
    np.testing.assert_allclose(mean.mean.numpy(), 2.5)
    errors = ep.prediction_errors(mean, RampSequences(T, [(0.0, 1.0)]), Tc, 3, 1)
    np.testing.assert_allclose(errors, np.tile(PIXELS * (h + Tc - 1 - 2.5) ** 2, (3, 1)))


def test_baselines_have_no_equivariance_gap():
    """They use no transition: the swapped roll-out is the own one (L^p_equiv = L^p)."""
    for baseline in (trivial_baselines.CopyLast(2),
                     trivial_baselines.build("baseline_mean_frame", 2, lambda: RampSequences(5, [(0.0, 1.0)]))):
        gen = RampSequences(5, [(0.0, 1.0), (2.0, -0.5), (1.0, 0.3)], shared_transition=True)
        Lp, Lp_equiv = ep.equivariance_errors(baseline, gen, 2, batch_size=3, n_batches=2)
        assert Lp.shape == (6, 3) and Lp.max() > 0
        np.testing.assert_array_equal(Lp, Lp_equiv)


def test_unknown_baseline_and_missing_training_data_are_named():
    with pytest.raises(ValueError, match="unknown trivial baseline 'baseline_zero'"):
        trivial_baselines.build("baseline_zero", 2)
    with pytest.raises(ValueError, match="needs training sequences"):
        trivial_baselines.build("baseline_mean_frame", 2)


def test_cli_baseline_uses_the_protocol_and_the_training_split(tmp_path, fake_world):  # noqa: F811
    out = tmp_path / "p.csv"
    run_msp(["evaluate", "prediction", "--baseline", "baseline_mean_frame", "--dataset", "mnist",
             "--dataset-options", '{"digits": [4]}', "--n-batches", "2", "--out", str(out), "--device", "cpu"])
    table = pd.read_csv(out)
    assert list(table.columns) == ["horizon", "mse", "mse_sem", "n_sequences"]
    assert table.horizon.tolist() == list(range(1, 19)) and (table.n_sequences == 32).all()
    # the mean frame from training-split sequences of the same length, another seed; then the test set
    assert fake_world[0] == {"split": "train", "T": 20, "seed": 2, "root": None}
    assert fake_world[-1] == {"split": "test", "T": 20, "seed": 1, "root": None}

    run_msp(["evaluate", "equivariance", "--baseline", "baseline_copy_last", "--dataset", "mnist",
             "--n-batches", "1", "--out", str(tmp_path / "e.csv")])
    equiv = pd.read_csv(tmp_path / "e.csv")
    assert len(equiv) == 8 and (equiv.Lp == equiv.Lp_equiv).all()


def test_cli_baseline_errors(tmp_path, fake_world, capsys):  # noqa: F811
    from msp.cli import main as msp_main

    with pytest.raises(SystemExit, match="also give --dataset"):
        msp_main(["evaluate", "prediction", "--baseline", "baseline_copy_last", "--out", str(tmp_path / "p.csv")])
    with pytest.raises(SystemExit, match="not a JSON object"):
        msp_main(["evaluate", "prediction", "--baseline", "baseline_copy_last", "--dataset", "mnist",
                  "--dataset-options", "digits=4", "--out", str(tmp_path / "p.csv")])
    with pytest.raises(SystemExit) as done:  # one of --checkpoint / --baseline, not both
        msp_main(["evaluate", "prediction", "--baseline", "baseline_copy_last", "--checkpoint", "x.pt",
                  "--dataset", "mnist", "--out", str(tmp_path / "p.csv")])
    assert done.value.code == 2 and "not allowed with" in capsys.readouterr().err
    assert not (tmp_path / "p.csv").exists()


def test_gathered_layout_has_seedless_baselines():
    assert tables.run_of("results/mnist/baseline_copy_last/eval/prediction.csv") == {
        "dataset": "mnist", "model": "baseline_copy_last", "seed": None}
    assert tables.run_of("results/mnist/lstsq/seed2/eval/prediction.csv")["seed"] == 2
    with pytest.raises(ValueError, match="seedN"):
        tables.run_of("results/mnist/lstsq/eval/prediction.csv")  # a model's run needs its seed
    with pytest.raises(ValueError, match="BASELINE"):
        tables.run_of("results/mnist/baseline_copy_last/seed1/eval/prediction.csv")


def test_real_embedded_mnist_baselines(tmp_path):
    """The real generator through the CLI (embedded digits, 2 batches): both baselines give
    finite, positive errors, and the digits' motion makes copy-last grow with the horizon."""
    for name in trivial_baselines.BASELINES:
        out = tmp_path / f"{name}.csv"
        run_msp(["evaluate", "prediction", "--baseline", name, "--dataset", "mnist", "--root", str(tmp_path / "data"),
                 "--source", "embedded", "--n-batches", "1", "--batch-size", "8", "--T", "8", "--device", "cpu",
                 "--out", str(out)])
        table = pd.read_csv(out)
        assert len(table) == 6 and np.isfinite(table.mse).all() and (table.mse > 0).all()
    copy_last = pd.read_csv(tmp_path / "baseline_copy_last.csv").mse
    assert copy_last.iloc[-1] > copy_last.iloc[0]
