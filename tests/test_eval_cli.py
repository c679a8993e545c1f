"""`msp evaluate`: per-dataset defaults and contracted files (fake world), then a tiny real run."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from fake_world import run_msp
from msp.cli import main as msp_main


def test_cli_defaults_follow_the_protocols(tmp_path, fake_world):
    run_msp(["evaluate", "prediction", "--checkpoint", "x.pt", "--out", str(tmp_path / "p.csv"), "--device", "cpu"])
    table = pd.read_csv(tmp_path / "p.csv")
    assert list(table.columns) == ["horizon", "mse", "mse_sem", "n_sequences"]
    assert table.horizon.tolist() == list(range(1, 19))  # mnist: T = 20, T_cond = 2
    assert (table.n_sequences == 62 * 16).all()            # the authors' 982-sequence loader
    assert fake_world[-1] == {"split": "test", "T": 20, "seed": 1, "root": None}

    run_msp(["evaluate", "equivariance", "--checkpoint", "x.pt", "--out", str(tmp_path / "e.csv"),
             "--n-batches", "2", "--root", "elsewhere"])
    table = pd.read_csv(tmp_path / "e.csv")
    assert list(table.columns) == ["horizon", "Lp", "Lp_equiv", "n_sequences"]
    assert len(table) == 8 and (table.n_sequences == 64).all()  # mnist: T = 10, batches of 32
    np.testing.assert_allclose(table.Lp_equiv, table.Lp, rtol=1e-3)  # the fake's M depends on g only
    assert fake_world[-1] == {"split": "test", "T": 10, "seed": 1, "root": "elsewhere", "shared_transition": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.csv", "p.csv"]  # no temporary files left


def test_cli_prediction_diagnostics(tmp_path, fake_world):
    base = ["evaluate", "prediction", "--checkpoint", "x.pt", "--device", "cpu", "--n-batches", "2"]
    for name, extra in [("p", []), ("fit", ["--fit-frames", "20"]), ("rec", ["--reconstruct"])]:
        run_msp([*base, *extra, "--out", str(tmp_path / f"{name}.csv")])
    protocol, fit, rec = (pd.read_csv(tmp_path / f"{n}.csv") for n in ("p", "fit", "rec"))
    assert list(fit.columns) == list(rec.columns) == list(protocol.columns) and len(fit) == len(rec) == 18
    # the fake world is exactly linear: two frames already give the exact M*, more change nothing,
    # and the roll-out adds nothing to the decoder's own loss (gain 0.9: 0.01 |x|^2 per frame)
    np.testing.assert_allclose(fit.mse, protocol.mse, rtol=1e-4)
    np.testing.assert_allclose(rec.mse, protocol.mse, rtol=1e-4)
    with pytest.raises(SystemExit, match="a --baseline has no latent"):
        msp_main(["evaluate", "prediction", "--baseline", "baseline_copy_last", "--dataset", "mnist", "--reconstruct",
                  "--out", str(tmp_path / "b.csv"), "--n-batches", "1"])
    assert not (tmp_path / "b.csv").exists()


def test_cli_per_sequence_errors_and_their_paired_comparison(tmp_path, fake_world, capsys):
    base = ["evaluate", "prediction", "--checkpoint", "x.pt", "--device", "cpu", "--n-batches", "3", "--batch-size", "4"]
    run_msp([*base, "--out", str(tmp_path / "p.csv"), "--per-sequence", str(tmp_path / "p.npz")])
    run_msp([*base, "--reconstruct", "--out", str(tmp_path / "r.csv"), "--per-sequence", str(tmp_path / "r.npz")])
    run_msp(["evaluate", "prediction", "--baseline", "baseline_copy_last", "--dataset", "mnist", "--n-batches", "3",
             "--batch-size", "4", "--out", str(tmp_path / "c.csv"), "--per-sequence", str(tmp_path / "c.npz")])
    stored = np.load(tmp_path / "p.npz")
    assert stored["errors"].shape == (12, 18)  # sequences x horizons
    np.testing.assert_allclose(stored["errors"].mean(axis=0), pd.read_csv(tmp_path / "p.csv").mse, rtol=1e-6)
    assert json.loads(str(stored["evaluation_set"])) == {
        "dataset": "mnist", "source": "embedded", "split": "test", "T": 20, "T_cond": 2, "seed": 1,
        "batch_size": 4, "n_batches": 3, "options": {"max_T": 20}}

    # the fake world is exactly linear: the roll-out and the decoded latents agree sequence by sequence
    run_msp(["evaluate", "paired", str(tmp_path / "p.npz"), str(tmp_path / "r.npz"), "--out", str(tmp_path / "pr.csv")])
    paired = pd.read_csv(tmp_path / "pr.csv")
    assert len(paired) == 18 and (paired.n_sequences == 12).all()
    np.testing.assert_allclose(paired["diff"], 0, atol=1e-3 * paired.mse_a.max())
    shown = capsys.readouterr().out
    assert "A = x.pt\nB = x.pt, reconstruct" in shown and "same 12 sequences of mnist" in shown

    # copying the last frame is far worse than the model at every horizon, on (nearly) every sequence
    run_msp(["evaluate", "paired", str(tmp_path / "p.npz"), str(tmp_path / "c.npz"), "--out", str(tmp_path / "pc.csv")])
    paired = pd.read_csv(tmp_path / "pc.csv")
    np.testing.assert_allclose(paired.mse_b, pd.read_csv(tmp_path / "c.csv").mse, rtol=1e-6)
    assert (paired.low95 > 0).all() and (paired.share_a_lower > 0.9).all()

    # other sequences cannot be paired: the error names what differs
    run_msp([*base, "--seed", "2", "--out", str(tmp_path / "s.csv"), "--per-sequence", str(tmp_path / "s.npz")])
    with pytest.raises(SystemExit, match="differ in seed"):
        msp_main(["evaluate", "paired", str(tmp_path / "p.npz"), str(tmp_path / "s.npz")])
    with pytest.raises(SystemExit, match="not a per-sequence file"):
        msp_main(["evaluate", "paired", str(tmp_path / "p.npz"), str(tmp_path / "p.csv")])


def test_cli_sbd_and_samples_files(tmp_path, fake_world):
    run_msp(["evaluate", "sbd", "--checkpoint", "x.pt", "--out", str(tmp_path / "sbd"), "--T", "4",
             "--n-batches", "4", "--component-batches", "1", "--epochs", "2"])
    summary = json.loads((tmp_path / "sbd" / "sbd.json").read_text())
    assert {"blocks", "block_sizes", "offblock_energy_before", "offblock_energy_after", "factor_names",
            "factor_blocks", "shared_blocks", "commutant_dim", "gap", "finest_and_disjoint"} <= set(summary)
    assert summary["method"] == "algebraic" and sorted(summary["block_sizes"]) == [1, 2, 2]
    assert summary["finest_and_disjoint"] and summary["factor_dims"] == {"rot_a": 2, "rot_b": 2, "scale": 1}
    assert summary["n_matrices"] == 128 and summary["factor_names"] == ["rot_a", "rot_b", "scale"]
    maps = np.load(tmp_path / "sbd" / "sbd_maps.npz")
    assert {"before", "after", "perm", "U", "components", "disentangle"} <= set(maps.files)
    assert maps["components"].shape == (3, 5, 5) and maps["disentangle"].shape[:2] == (len(summary["blocks"]), 2)
    # M* collected from training-distribution sequences, slower MNIST velocities (docs/evaluation.md, SBD)
    assert {"split": "train", "T": 4, "seed": 1234, "root": None, "range_a": (-0.2, 0.2),
            "range_h": (-0.2, 0.2), "max_T": 4} in fake_world

    run_msp(["evaluate", "samples", "--checkpoint", "x.pt", "--out", str(tmp_path / "s.npz"), "--T", "5"])
    samples = np.load(tmp_path / "s.npz")
    assert {k: samples[k].shape[:2] for k in samples.files} == {
        "cond": (8, 2), "target": (8, 3), "pred": (8, 3), "pred_equiv": (8, 3)}


@pytest.mark.slow
def test_end_to_end_on_a_tiny_trained_checkpoint(tmp_path):
    config = {
        "dataset": {"name": "mnist", "root": str(tmp_path / "data"), "source": "embedded"},
        "model": {"name": "lstsq", "k": 0.25, "dim_m": 16, "dim_a": 4, "n_blocks": 2},
        "train": {"iterations": 4, "batch_size": 4, "lr": 1e-3, "lr_decay_iter": 4, "checkpoint_every": 4,
                  "log_every": 2, "seed": 1, "device": "cpu"},
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    subprocess.run([sys.executable, "-m", "msp", "train", "--config", str(tmp_path / "run.yaml"),
                    "--out", str(tmp_path / "run"), "--no-progress"], check=True, capture_output=True)
    ckpt = str(tmp_path / "run" / "model.pt")
    small = ["--checkpoint", ckpt, "--device", "cpu"]
    run_msp(["evaluate", "prediction", *small, "--out", str(tmp_path / "p.csv"), "--n-batches", "2", "--batch-size", "2"])
    for name, extra in [("fit", ["--fit-frames", "20"]), ("rec", ["--reconstruct"])]:  # the diagnostics, real model
        run_msp(["evaluate", "prediction", *small, *extra, "--out", str(tmp_path / f"{name}.csv"),
                 "--n-batches", "2", "--batch-size", "2"])
    run_msp(["evaluate", "equivariance", *small, "--out", str(tmp_path / "e.csv"), "--n-batches", "1", "--batch-size", "3"])
    run_msp(["evaluate", "samples", *small, "--out", str(tmp_path / "s.npz"), "--batch-size", "2"])
    run_msp(["evaluate", "sbd", *small, "--out", str(tmp_path / "sbd"), "--n-batches", "2", "--batch-size", "8",
             "--component-batches", "1", "--component-batch-size", "4", "--epochs", "2"])
    pred = pd.read_csv(tmp_path / "p.csv")
    assert list(pred.columns) == ["horizon", "mse", "mse_sem", "n_sequences"] and len(pred) == 18
    assert np.isfinite(pred.mse).all() and (pred.mse > 0).all() and (pred.n_sequences == 4).all()
    for name in ("fit", "rec"):
        diag = pd.read_csv(tmp_path / f"{name}.csv")
        assert len(diag) == 18 and np.isfinite(diag.mse).all() and (diag.n_sequences == 4).all()
    equiv = pd.read_csv(tmp_path / "e.csv")
    assert list(equiv.columns) == ["horizon", "Lp", "Lp_equiv", "n_sequences"] and len(equiv) == 8
    samples = np.load(tmp_path / "s.npz")
    assert samples["pred"].shape == (2, 18, 3, 32, 32) and "pred_equiv" in samples.files
    summary = json.loads((tmp_path / "sbd" / "sbd.json").read_text())
    assert sorted(i for b in summary["blocks"] for i in b) == [0, 1, 2, 3]
    assert summary["factor_names"] == ["rotation", "hue", "translation"] and summary["model"] == "lstsq"
    maps = np.load(tmp_path / "sbd" / "sbd_maps.npz")
    assert maps["after"].shape == (4, 4) and maps["disentangle"].shape[1:] == (8, 3, 32, 32)
