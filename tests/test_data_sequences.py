"""Sequence generators on the embedded source (and on real Fashion-MNIST images):
factor trajectories, shared transitions, frozen actions, periodicity, seeding, state, and
the batched renderer against an independent per-frame reference renderer."""

import colorsys
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from msp.data import DATASETS, DataError, build_sequences, dataset_family
from msp.data.readers import read_idx
from msp.data.reference_render import render_frame
from msp.data.render import hsv_to_rgb, render_digit_frames, resize_and_pad
from msp.data.sequences import SequentialMNIST

FASHION = Path("/usr/share/datasets/fashion-mnist")
needs_fashion = pytest.mark.skipif(
    not FASHION.is_dir(), reason="Debian package dataset-fashion-mnist not installed "
    "(/usr/share/datasets/fashion-mnist absent); .ci/run installs it")


@pytest.fixture(scope="session")
def root(tmp_path_factory):
    """One embedded data root for the session (prepared on first use, in seconds)."""
    return tmp_path_factory.getbasetemp() / "embedded-data"


def make(root, name, **kw):
    return build_sequences(name, root=root, source="embedded", **kw)


@pytest.mark.parametrize("name", DATASETS)
def test_every_dataset_batch(root, name):
    gen = make(root, name, T=3, seed=1)
    xs = gen.sample(4)
    assert xs.shape == (4, 3) + tuple(gen.image_shape) and xs.dtype == torch.float32
    assert 0 <= xs.min() and xs.max() <= 1 and xs.std() > 0.01
    expected = {"mnist": (3, 32, 32), "mnist_bg": (3, 32, 32), "3dshapes": (3, 64, 64),
                "smallNORB": (1, 96, 96)}[dataset_family(name)]
    assert tuple(gen.image_shape) == expected
    assert len(gen.factor_names) > max(gen.default_active_actions)


@pytest.mark.parametrize("name,T,force", [("3dshapes", 8, True), ("3dshapes", 3, False),
                                          ("smallNORB", 6, True), ("smallNORB", 3, False)])
@pytest.mark.parametrize("split", ["train", "test"])
def test_factor_trajectories_stay_in_range_and_are_linear(root, name, T, force, split):
    gen = make(root, name, T=T, seed=2, split=split, force_moving=force)
    xs, info = gen.sample_with_factors(64)
    factors, start, velocity = info["factors"], info["start"], info["velocity"]
    sizes = gen.factor_sizes
    t = torch.arange(T)[None, :, None]
    assert torch.equal(factors, start[:, None, :] + velocity[:, None, :] * t)  # p + v t exactly
    assert (factors >= 0).all() and (factors < sizes).all()
    active = torch.zeros(len(sizes), dtype=torch.bool)
    active[gen.active_actions] = True
    assert (velocity[:, ~active] == 0).all()
    assert (velocity.abs() <= sizes // T).all()
    if force:
        assert (velocity[:, active].abs() >= 1).all()
    else:
        assert (velocity[:, active] == 0).any() and (velocity[:, active] != 0).any()
    if name == "3dshapes":
        shapes = set(factors[..., 4].unique().tolist())
        assert (shapes == {0}) if split == "train" else (shapes <= {1, 2, 3} and len(shapes) > 1)
    else:  # the frames are exactly the grid images at those factors
        grid = np.load(root / "prepared/embedded/smallNORB" / f"{split}_images.npy", mmap_mode="r")
        n, k = 5, 1
        expected = grid[tuple(factors[n, k].tolist())] / 255.0
        assert np.allclose(xs[n, k, 0].numpy(), expected, atol=1e-6)


def test_shared_transition_shares_velocities_until_redrawn(root):
    gen = make(root, "3dshapes", T=4, seed=3, shared_transition=True)
    _, a = gen.sample_with_factors(16)
    _, b = gen.sample_with_factors(16)
    assert (a["velocity"] == a["velocity"][0]).all() and torch.equal(a["velocity"], b["velocity"])
    assert not torch.equal(a["start"], b["start"])  # initial states stay per sequence
    seen = set()
    for _ in range(6):
        gen.redraw_shared_transition()
        seen.add(tuple(gen.sample_with_factors(2)[1]["velocity"][0].tolist()))
    assert len(seen) > 1
    mnist = make(root, "mnist", T=3, seed=3, shared_transition=True)
    _, m = mnist.sample_with_factors(8)
    for key in ("v_angle", "v_hue", "v_pos"):
        assert (m[key] == m[key][0]).all()
    assert m["angle"][:, 0].unique().numel() == 8
    with pytest.raises(RuntimeError, match="shared_transition=True"):
        make(root, "mnist", T=3).redraw_shared_transition()


def test_inactive_actions_stay_frozen(root):
    gen = make(root, "mnist", T=5, seed=4, active_actions=[1])
    xs, info = gen.sample_with_factors(8)
    assert (info["angle"] == info["angle"][:, :1]).all()
    assert (info["position"] == info["position"][:, :1]).all()
    assert (info["hue"] != info["hue"][:, :1]).any()
    # Shape and brightness stay; only the colour changes: the grey level is constant.
    grey = xs.max(dim=2).values  # (N, T, H, W): max over RGB = grey / 255 (saturation 1)
    assert torch.allclose(grey, grey[:, :1].expand_as(grey), atol=1e-5)
    shapes = make(root, "3dshapes", T=4, seed=4, active_actions=[5], force_moving=True)
    _, f = shapes.sample_with_factors(8)
    assert (f["factors"][..., :5] == f["factors"][:, :1, :5]).all()
    assert (f["velocity"][:, 5] != 0).all()
    with pytest.raises(ValueError, match="cannot move"):
        make(root, "3dshapes", T=3, active_actions=[4])


@pytest.mark.parametrize("warp_mode", ["authors", "exact"])
def test_rotating_by_two_pi_returns_the_original_frame(root, warp_mode):
    # Angular velocity pi * 2 = 2 pi per frame, everything else frozen.
    gen = make(root, "mnist", T=3, seed=5, active_actions=[0], range_a=(2.0, 2.0),
               warp_mode=warp_mode)
    xs = gen.sample(6)
    assert torch.allclose(xs[:, 1:], xs[:, :1].expand_as(xs[:, 1:]), atol=1e-4)
    moving = make(root, "mnist", T=2, seed=5, active_actions=[0], range_a=(0.5, 0.5)).sample(6)
    assert (moving[:, 1] - moving[:, 0]).abs().max() > 0.5  # a quarter turn does change it


def test_hue_is_periodic_and_matches_colorsys():
    h = torch.linspace(-2, 3, 501, dtype=torch.float64)
    rgb = hsv_to_rgb(h)
    assert torch.allclose(rgb, hsv_to_rgb(h + 1), atol=1e-12)
    expected = torch.tensor([colorsys.hsv_to_rgb(v % 1.0, 1.0, 1.0) for v in h.tolist()])
    assert torch.allclose(rgb, expected.double(), atol=1e-9)


def test_identity_warp_and_translation_known_answers():
    digit = torch.zeros(1, 28, 28)
    digit[0, 10:18, 12:16] = 255
    src = resize_and_pad(digit)
    zero = torch.zeros(1, dtype=torch.float64)
    frame = render_digit_frames(src, zero, zero, torch.zeros(1, 2, dtype=torch.float64),
                                warp_mode="exact")
    assert torch.allclose(frame[0, 0], src[0, 0] / 255, atol=1e-6)  # hue 0 = red
    assert frame[0, 1:].abs().max() < 1e-6
    shifted = render_digit_frames(src, zero, zero, torch.tensor([[3.0, -2.0]], dtype=torch.float64),
                                  warp_mode="exact")
    assert torch.allclose(shifted[0, 0], torch.roll(src[0, 0] / 255, (-2, 3), (0, 1)), atol=1e-5)


def test_same_seed_same_batch_and_state_round_trip(root, tmp_path):
    for name, opts in (("mnist_bg", {}), ("smallNORB", {"shared_transition": True})):
        a = make(root, name, T=3, seed=7, **opts)
        b = make(root, name, T=3, seed=7, **opts)
        assert torch.equal(a.sample(5), b.sample(5))
        assert not torch.equal(a.sample(5), make(root, name, T=3, seed=8, **opts).sample(5))
        a.sample(3)
        torch.save(a.state_dict(), tmp_path / "state.pt")  # as a checkpoint would
        expected = [a.sample(4) for _ in range(2)]
        resumed = make(root, name, T=3, seed=0, **opts)
        resumed.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
        assert all(torch.equal(e, resumed.sample(4)) for e in expected)


def test_mnist_translation_and_acceleration_follow_the_generative_process(root):
    gen = make(root, "mnist", T=6, seed=9)
    _, info = gen.sample_with_factors(32)
    t = torch.arange(6, dtype=torch.float64)
    p0 = info["position"][:, 0]
    assert (p0.abs() <= 10).all()
    assert torch.allclose(info["position"], p0[:, None] + info["v_pos"][:, None] * t[:, None])
    assert (info["v_pos"].abs() <= 20 / 8 + 1e-12).all()  # (p1 - p0) / (max_T - 1)
    # an evaluation sequence (max_T = T) goes from its start p0 to an end point p1 inside the box
    long = make(root, "mnist", T=20, seed=9, max_T=20)
    _, long_info = long.sample_with_factors(256)
    path = long_info["position"]  # (N, T, 2)
    assert (path.abs() <= 10 + 1e-9).all()
    assert torch.allclose(path[:, -1] - path[:, 0], 19 * long_info["v_pos"])
    assert path[:, -1].abs().amax() > 9  # the end points fill the box, not just its middle
    assert (info["v_angle"].abs() <= 0.5 * math.pi).all() and (info["v_hue"].abs() <= 0.25).all()
    accl = make(root, "mnist_accl", T=10, seed=9)
    xs, a = accl.sample_with_factors(16)
    assert xs.shape == (16, 10, 3, 32, 32) and (a["position"] == 0).all()
    assert (a["a_angle"].abs() <= 0.025 * math.pi).all() and (a["a_angle"] != 0).all()
    assert torch.allclose(a["angle"], a["angle"][:, :1] + a["v_angle"][:, None] * t.new_tensor(range(10))
                          + 0.5 * a["a_angle"][:, None] * t.new_tensor(range(10)) ** 2)
    assert accl.n_images == 600 and make(root, "mnist_bg_full", T=3).n_images == 6000


def test_bad_options_are_named(root):
    with pytest.raises(ValueError, match="unknown Sequential-MNIST option 'colour'"):
        make(root, "mnist", colour=True)
    with pytest.raises(DataError, match="unknown option"):
        make(root, "3dshapes", digits=[4])
    with pytest.raises(ValueError, match="at most 8"):
        make(root, "3dshapes", T=9)
    with pytest.raises(ValueError, match="at most 6"):
        make(root, "smallNORB", T=7)
    with pytest.raises(DataError, match="unknown dataset"):
        make(root, "mnist-bg")
    with pytest.raises(DataError, match="no image has a label"):
        make(root, "mnist", digits=[11])


def test_embedded_shapes_factors_change_their_own_pixels(root):
    gen = make(root, "3dshapes", T=1, seed=0)
    table = gen.table
    base = torch.tensor([3, 3, 3, 4, 0, 7])
    strides = gen.strides

    def image(factors):
        return table.gather((factors * strides).sum()[None], "cpu")[0].float()

    ref = image(base)
    floor = image(base + torch.tensor([1, 0, 0, 0, 0, 0]))
    obj = image(base + torch.tensor([0, 0, 1, 0, 0, 0]))
    floor_mask = table.layers["floor_alpha"][7] > 0
    object_mask = table.layers["object_alpha"][4, 0, 7] > 0
    changed_floor = (floor != ref).any(0)
    changed_obj = (obj != ref).any(0)
    assert changed_floor.any() and not (changed_floor & ~floor_mask).any()
    assert changed_obj.any() and not (changed_obj & ~object_mask).any()
    assert len(table) == 480000


@needs_fashion
def test_sequential_mnist_on_real_fashion_mnist():
    images = read_idx(FASHION / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(FASHION / "t10k-labels-idx1-ubyte.gz")
    gen = SequentialMNIST(images, labels, None, T=4, seed=0, digits=[4])
    assert gen.n_images == 1000  # class 4 (coat) only
    xs, info = gen.sample_with_factors(8)
    assert xs.shape == (8, 4, 3, 32, 32) and 0 <= xs.min() and xs.max() <= 1
    # Colour has saturation 1: in every pixel one channel is the grey level, one is 0.
    assert torch.allclose(xs.min(dim=2).values, torch.zeros(1), atol=1e-6)
    # The mass of the object is preserved by rotation up to the authors' zoom and the border.
    mass = xs.max(dim=2).values.sum(dim=(-1, -2))
    assert ((mass / mass[:, :1]) - 1).abs().max() < 0.35


@needs_fashion
@pytest.mark.parametrize("warp_mode", ["authors", "exact"])
def test_batched_renderer_matches_the_reference_on_real_images(warp_mode):
    images = read_idx(FASHION / "t10k-images-idx3-ubyte.gz")
    rng = np.random.default_rng(0)
    n = 48
    idx = rng.integers(0, len(images), n)
    angle, hue = rng.uniform(0, 2 * np.pi, n), rng.uniform(-1, 2, n)
    shift, bg = rng.uniform(-10, 10, (n, 2)), rng.uniform(0, 1, (n, 3, 32, 32))
    ours = render_digit_frames(resize_and_pad(torch.from_numpy(images[idx])), torch.from_numpy(angle),
                               torch.from_numpy(hue), torch.from_numpy(shift), None, warp_mode).numpy()
    exact = np.stack([render_frame(images[i], a, h, s[0], s[1], None, warp_mode)
                      for i, a, h, s in zip(idx, angle, hue, shift)])
    assert np.abs(ours - exact).max() < 1e-5  # same maths, float32 vs float64
    cv2_like = np.stack([render_frame(images[i], a, h, s[0], s[1], None, warp_mode, quantize=True)
                         for i, a, h, s in zip(idx, angle, hue, shift)])
    diff = np.abs(ours - cv2_like)  # cv2 rounds sampling positions to 1/32 pixel
    assert diff.mean() < 1e-3 and diff.max() < 0.05
    with_bg = render_digit_frames(resize_and_pad(torch.from_numpy(images[idx])), torch.from_numpy(angle),
                                  torch.from_numpy(hue), torch.from_numpy(shift),
                                  torch.from_numpy(bg).float(), warp_mode).numpy()
    ref_bg = np.stack([render_frame(images[i], a, h, s[0], s[1], b, warp_mode)
                       for i, a, h, s, b in zip(idx, angle, hue, shift, bg)])
    assert np.abs(with_bg - ref_bg).max() < 1e-5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
@pytest.mark.parametrize("name", DATASETS)
def test_cuda_draws_the_same_sequences_as_the_cpu(root, name):
    cpu = make(root, name, T=3, seed=11, device="cpu")
    gpu = make(root, name, T=3, seed=11, device="cuda")
    (a, info_a), (b, info_b) = cpu.sample_with_factors(8), gpu.sample_with_factors(8)
    assert b.device.type == "cuda" and torch.allclose(a, b.cpu(), atol=1e-4)
    for key, value in info_a.items():  # parameters are drawn on the CPU either way
        assert torch.equal(value, info_b[key].cpu())
