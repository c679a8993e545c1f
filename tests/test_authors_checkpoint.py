"""Importing the authors' snapshots: same weights and input -> same outputs as their modules.

`AuthorsLike*` (tests/authors_like.py) is an independent re-implementation of the authors' module tree
(github.com/takerum/meta_sequential_prediction, models/seqae.py, base_networks.py,
resblock.py), written from its structure: the same attribute names and nn.Sequential
indices (activations and rearrange layers included), weight standardization registered
with torch.nn.utils.parametrize, explicit shapes instead of lazy modules. Its state_dict
therefore has the authors' key names; we import it and compare outputs.
"""

import subprocess
import sys

import pytest
import torch
import torch.nn as nn

from msp.authors_weights import AuthorsCheckpointError, fold_change_of_basis, load_authors_state_dict
from msp.models import build_model
from msp.networks import set_fused_kernels
from msp.checkpoint import load_checkpoint

from authors_like import CASES, AuthorsLikeEncoder, make_pair, randomize_


@pytest.mark.parametrize("case", sorted(CASES))
def test_import_reproduces_the_authors_forward_pass(case):
    cfg, shape, ref = make_pair(case)
    snapshot = ref.state_dict()
    assert "enc.phi.1.c1.parametrizations.weight.original" in snapshot  # the authors' naming
    ours = load_authors_state_dict(build_model(cfg, shape), snapshot).eval()
    xs = torch.rand(3, 2, *shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        H_ref, H_ours = ref.encode(xs), ours.encode(xs)
        torch.testing.assert_close(H_ours, H_ref, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ours.decode(H_ref), ref.decode(H_ref), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ours.predict(xs, 2), ref.predict(xs, 2), rtol=1e-5, atol=1e-5)
        set_fused_kernels(ours, True)  # the training's fused blocks: same function, other rounding
        torch.testing.assert_close(ours.predict(xs, 2), ref.predict(xs, 2), rtol=1e-4, atol=1e-4)


def test_simclr_projection_head_is_imported():
    shape, dim_mlp, dim_head = (3, 32, 32), 24, 12
    ref = nn.Module()
    ref.enc = AuthorsLikeEncoder(3, 32, 8, 3, out_dim=0)  # dim_latent = 0: no linear layer; 64 x 4 x 4 features
    ref.projhead = nn.Sequential(nn.Linear(64 * 4 * 4, dim_mlp), nn.ReLU(),
                                 nn.Linear(dim_mlp, dim_head))
    randomize_(ref)
    ours = build_model({"name": "simclr", "k": 0.25, "dim_mlp": dim_mlp, "dim_head": dim_head}, shape)
    load_authors_state_dict(ours, ref.state_dict())
    xs = torch.rand(2, 3, *shape)
    with torch.no_grad():
        expected = ref.projhead(ref.enc(xs.flatten(0, 1))).view(2, 3, dim_head)
        torch.testing.assert_close(ours.eval().encode(xs), expected, rtol=1e-5, atol=1e-5)


def test_change_of_basis_is_imported_and_folds_exactly():
    cfg, shape, ref = make_pair("lstsq", change_of_basis=True)
    ours = load_authors_state_dict(build_model(cfg, shape), ref.state_dict()).eval()
    xs = torch.rand(3, 2, *shape, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected_H, expected_pred = ref.encode(xs), ref.predict(xs, 2)
        torch.testing.assert_close(ours.encode(xs), expected_H, rtol=1e-5, atol=1e-5)
        fold_change_of_basis(ours)
        assert ours.change_of_basis is None
        torch.testing.assert_close(ours.encode(xs), expected_H, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(ours.predict(xs, 2), expected_pred, rtol=1e-4, atol=1e-4)


def test_shape_mismatch_names_key_shapes_and_setting():
    cfg, shape, ref = make_pair("lstsq")
    wrong_k = build_model({**cfg, "k": 0.5}, shape)
    with pytest.raises(AuthorsCheckpointError) as err:
        load_authors_state_dict(wrong_k, ref.state_dict())
    msg = str(err.value)
    assert "'enc.phi.0.weight'" in msg and "expected (16, 3, 3, 3), found (8, 3, 3, 3)" in msg
    assert "probably k" in msg and "k = 0.25" in msg
    wrong_a = build_model({**cfg, "dim_a": 8}, shape)
    with pytest.raises(AuthorsCheckpointError, match=r"enc\.linear\.weight.*probably dim_m\*dim_a differs"):
        load_authors_state_dict(wrong_a, ref.state_dict())


def test_missing_and_unexpected_keys_suggest_the_model():
    cfg, shape, ref = make_pair("lstsq")
    with pytest.raises(AuthorsCheckpointError) as err:
        load_authors_state_dict(build_model({**cfg, "name": "neuralM"}, shape), ref.state_dict())
    msg = str(err.value)
    assert "36 missing key(s) under 'M_net', e.g. 'M_net.phi.0.weight'" in msg and "fit model lstsq" in msg
    _, _, ref_m = make_pair("neuralM")
    with pytest.raises(AuthorsCheckpointError, match=r"(?s)unexpected key\(s\) under 'M_net'.*fit model neuralM"):
        load_authors_state_dict(build_model(cfg, shape), ref_m.state_dict())
    missing_block = r"(?s)missing key\(s\) under 'enc', e\.g\. 'enc\.phi\.4\.c1.*n_blocks = 3"
    with pytest.raises(AuthorsCheckpointError, match=missing_block):
        load_authors_state_dict(build_model({**cfg, "n_blocks": 4, "bottom_width": None}, shape), ref.state_dict())


def test_cli_writes_a_checkpoint_our_loader_and_predict_accept(tmp_path):
    _, shape, ref = make_pair("neural_trans")
    snapshot = tmp_path / "snapshot_model_iter_30000"
    torch.save(ref.state_dict(), snapshot)
    authors_yaml = tmp_path / "config.yml"
    authors_yaml.write_text(
        "batchsize: 32\nseed: 2\nmax_iteration: 50000\nT_cond: 2\nT_pred: 1\nlr: 0.0003\n"
        "train_data: {fn: ./datasets/seq_mnist.py}\n"
        "model: {fn: ./models/seqae.py, name: SeqAENeuralTransition, args: {dim_m: 16, dim_a: 4, ch_x: 3, k: 0.25}}\n"
        "training_loop: {args: {lr_decay_iter: 40000, reconst_iter: 50000}}\n")
    out = tmp_path / "run" / "model.pt"
    cmd = [sys.executable, "-m", "msp", "import-authors", "--snapshot", str(snapshot), "--dataset", "mnist",
           "--authors-config", str(authors_yaml), "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    model, cfg = load_checkpoint(out)
    assert cfg["model"]["name"] == "neural_trans" and cfg["train"]["reconst_iter"] == 50000
    assert cfg["train"]["seed"] == 2 and torch.load(out, weights_only=False)["step"] == 30000
    xs = torch.rand(2, 2, *shape)
    with torch.no_grad():
        torch.testing.assert_close(model.predict(xs, 3), ref.predict(xs, 3), rtol=1e-5, atol=1e-5)
    # the same snapshot read with another width: a clear error, exit code 1, no file
    bad = subprocess.run(cmd[:-4] + ["--model", "neural_trans", "--dim-m", "16", "--dim-a", "4", "--k", "0.5",
                                     "--out", str(tmp_path / "bad.pt")],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "probably k" in bad.stderr and not (tmp_path / "bad.pt").exists()
