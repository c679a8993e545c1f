"""Every model of the registry: shapes, gradients, parameter counts, interface."""

import pytest
import torch

from msp.models import MODELS, build_model, count_parameters
from msp.networks import sinusoidal_embedding_2d, standardize_weight
from toys import small_config

# (image_shape, n_blocks) of the paper's datasets (docs/method.md, 'Training')
IMAGE_SIZES = {"mnist": ((3, 32, 32), 3), "3dshapes": ((3, 64, 64), 3), "smallNORB": ((1, 96, 96), 4)}


@pytest.mark.parametrize("dataset", sorted(IMAGE_SIZES))
@pytest.mark.parametrize("name", sorted(MODELS))
def test_forward_backward_at_paper_image_sizes(name, dataset):
    torch.manual_seed(0)
    shape, n_blocks = IMAGE_SIZES[dataset]
    model = build_model(small_config(name, n_blocks), shape)
    T = model.T_cond + max(model.T_pred, 1 if name == "cpc" else 0)
    xs = torch.rand(2, T, *shape)
    loss, metrics = model.loss(xs, diagnostics=True)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads), "every parameter must receive a gradient"
    assert sum(g.abs().sum() for g in grads) > 0
    assert all(v.ndim == 0 for v in metrics.values())
    if model.has_decoder:
        with torch.no_grad():
            pred = model.predict(xs[:, : model.T_cond], 3)
        assert pred.shape == (2, 3, *shape)
        assert 0 <= pred.min() and pred.max() <= 1


@pytest.mark.parametrize("name", ["lstsq", "neural_trans", "neuralM", "holstsq"])
def test_reconstruction_switch_adds_the_conditioning_frames(name):
    """With reconst the target is the whole sequence: the mean per-frame error over all T frames
    (holstsq too: the reconstruction warm-up of configs/demo.yaml and cpu.yaml)."""
    torch.manual_seed(0)
    model = build_model(small_config(name, 3), (3, 32, 32))
    xs = torch.rand(2, model.T_cond + max(model.T_pred, 1), 3, 32, 32)
    Tc, T = model.T_cond, xs.shape[1]
    with torch.no_grad():
        loss_pred, _ = model.loss(xs)
        loss_rec, _ = model.loss(xs, reconst=True)
        recon = model.decode(model.encode(xs[:, :Tc]))
    recon_error = ((recon - xs[:, :Tc]) ** 2).sum(dim=(2, 3, 4)).sum(dim=1).mean()
    torch.testing.assert_close(loss_rec, (recon_error + loss_pred * (T - Tc)) / T)


def analytic_parameter_count(C, S, k, n_blocks, latent, ks=3, pe=64):
    """docs/method.md, 'Networks', counted by hand: encoder + decoder of a sequence auto-encoder."""
    w0 = int(32 * k)

    def block(cin, cout, emb):
        c = cin + emb
        return 2 * cin + (c * cout * ks * ks + cout) + 2 * cout + (cout * cout * ks * ks + cout) + (c * cout + cout)

    enc = C * w0 * 9 + w0
    enc += sum(block(w0 * 2**i, w0 * 2 ** (i + 1), 0) for i in range(n_blocks))
    wN = w0 * 2**n_blocks
    enc += 2 * wN + wN * (S // 2**n_blocks) ** 2 * latent + latent
    bottom = S // 2**n_blocks
    dec = latent * wN + wN
    for i in range(n_blocks):
        side = bottom * 2 ** (n_blocks - i)
        dec += block(w0 * 2 ** (i + 1), w0 * 2**i, pe) + pe * side * side
    dec += 2 * w0 + w0 * C * 9 + C
    return enc + dec


PAPER = {  # dataset: (image_shape, k, n_blocks) from docs/method.md, 'Training'
    "mnist": ((3, 32, 32), 2, 3), "mnist_bg": ((3, 32, 32), 4, 3), "mnist_bg_full": ((3, 32, 32), 4, 3),
    "3dshapes": ((3, 64, 64), 1, 3), "smallNORB": ((1, 96, 96), 1, 4),
}


@pytest.mark.parametrize("dataset", sorted(PAPER))
def test_parameter_count_of_msp_matches_a_count_by_hand(dataset):
    shape, k, n_blocks = PAPER[dataset]
    with torch.device("meta"):
        model = build_model({"name": "lstsq", "k": k, "n_blocks": n_blocks}, shape)
    assert count_parameters(model) == analytic_parameter_count(shape[0], shape[1], k, n_blocks, 256 * 16)


def test_mnist_lstsq_is_dominated_by_the_encoder_linear():
    with torch.device("meta"):
        model = build_model({"name": "lstsq", "k": 2}, (3, 32, 32))
    assert model.encoder.linear.weight.shape == (4096, 8192)
    assert model.encoder.linear.weight.numel() / count_parameters(model) > 0.7


def test_weight_standardization_per_output_channel():
    w = torch.randn(6, 4, 3, 3) * 5 + 2
    ws = standardize_weight(w, eps=0.0)
    torch.testing.assert_close(ws.mean(dim=(1, 2, 3)), torch.zeros(6), atol=1e-6, rtol=0)
    torch.testing.assert_close(ws.flatten(1).std(dim=1), torch.ones(6))


def test_sinusoidal_embedding_values():
    emb = sinusoidal_embedding_2d(8, 3, 5)  # half = 4 channels for x, 4 for y
    x, y = torch.arange(5.0), torch.arange(3.0)
    torch.testing.assert_close(emb[0], x.sin().expand(3, 5))
    torch.testing.assert_close(emb[1], x.cos().expand(3, 5))
    torch.testing.assert_close(emb[2], (x / 100).sin().expand(3, 5))
    torch.testing.assert_close(emb[4], y.sin()[:, None].expand(3, 5))
    torch.testing.assert_close(emb[7], (y / 100).cos()[:, None].expand(3, 5))


def test_change_of_basis_round_trip_and_conjugated_transition():
    torch.manual_seed(0)
    model = build_model(small_config("lstsq", 3), (3, 32, 32)).eval()
    xs = torch.rand(3, 3, 3, 32, 32)
    with torch.no_grad():
        base = model.infer_transition(xs[:, :2])
        U = torch.linalg.qr(torch.randn(4, 4))[0] + 0.1 * torch.randn(4, 4)
        model.set_change_of_basis(U)
        changed = model.infer_transition(xs[:, :2])
        torch.testing.assert_close(changed["H"], base["H"] @ U, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(changed["M"], torch.linalg.solve(U, base["M"] @ U), atol=1e-3, rtol=1e-3)
        # predictions do not depend on the basis
        model.set_change_of_basis(None)
        p0 = model.predict(xs[:, :2], 2)
        model.set_change_of_basis(U)
        torch.testing.assert_close(model.predict(xs[:, :2], 2), p0, atol=1e-4, rtol=1e-4)


def test_fix_indices_keeps_other_coordinates_still():
    torch.manual_seed(0)
    model = build_model(small_config("lstsq", 3), (3, 32, 32)).eval()
    model.set_fix_indices([0, 2])
    with torch.no_grad():
        state = model.infer_transition(torch.rand(2, 2, 3, 32, 32))
        H = model.rollout(state, 3)
    torch.testing.assert_close(H[..., [1, 3]], state["H"][:, -1:, :, [1, 3]].expand(-1, 3, -1, -1))


def test_unknown_model_key_is_named():
    with pytest.raises(ValueError, match="unknown key.*'widht'"):
        build_model({"name": "lstsq", "widht": 2}, (3, 32, 32))
    with pytest.raises(ValueError, match="unknown model 'lstq'"):
        build_model({"name": "lstq"}, (3, 32, 32))
    with pytest.raises(ValueError, match="bottom_width"):
        build_model({"name": "lstsq", "bottom_width": 5}, (3, 32, 32))


def test_a_model_with_a_change_of_basis_saves_and_loads():
    model = build_model(small_config("lstsq", 3), (3, 32, 32))
    U = torch.randn(4, 4)
    model.set_change_of_basis(U)
    fresh = build_model(small_config("lstsq", 3), (3, 32, 32))
    fresh.load_state_dict(model.state_dict())
    torch.testing.assert_close(fresh.change_of_basis, U)


def test_fused_convolutions_equal_the_faithful_ones():
    import torch.nn.functional as F

    from msp.networks import ResidualBlock, pooled_kernel, upsampled_conv3x3

    torch.manual_seed(0)
    x, w = torch.randn(2, 5, 6, 8, dtype=torch.float64), torch.randn(7, 5, 3, 3, dtype=torch.float64)
    torch.testing.assert_close(upsampled_conv3x3(x, w), F.conv2d(F.interpolate(x, scale_factor=2), w, padding=1))
    torch.testing.assert_close(F.conv2d(x, pooled_kernel(w), stride=2, padding=1),
                               F.avg_pool2d(F.conv2d(x, w, padding=1), 2))
    for resample, embedding in (("down", None), ("up", (12, 16))):
        block = ResidualBlock(8, 16, resample, 3, embedding).double()
        h = torch.randn(3, 8, 6, 8, dtype=torch.float64)
        reference = block(h)
        block.fused = True
        torch.testing.assert_close(block(h), reference)
