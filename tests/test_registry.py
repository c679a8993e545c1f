"""The registries (msp.registry): a new dataset and a new model are one entry each plus their
code, and then go through `msp train` and `msp evaluate` like the paper's."""

import dataclasses
import math

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import yaml

from msp import registry
from msp.cli import main as msp_main
from msp.models import Lstsq, LstsqConfig


# -- a toy dataset: blobs spinning at a constant speed per sequence (or one shared speed) --
class SpinningBlobs:
    factor_names = ["rotation"]

    def __init__(self, T, seed, size=16, shared_transition=False):
        self.T, self.image_shape = T, (1, size, size)
        yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
        self.image = (torch.exp(-((xx - 0.4) ** 2 + yy**2) / 0.05) + torch.exp(-(xx**2 + (yy + 0.5) ** 2) / 0.1))[None]
        self.generator = torch.Generator().manual_seed(seed)
        self.shared_transition, self.speed = shared_transition, None
        if shared_transition:
            self.redraw_shared_transition()

    def redraw_shared_transition(self):
        self.speed = (torch.rand(1, generator=self.generator) * 2 - 1) * 0.5

    def sample(self, batch_size):
        g = self.generator
        speed = self.speed.expand(batch_size) if self.shared_transition else (torch.rand(batch_size, generator=g) * 2 - 1) * 0.5
        theta = (torch.rand(batch_size, generator=g)[:, None] * 2 * math.pi + speed[:, None] * torch.arange(self.T)).flatten()
        cos, sin, zero = theta.cos(), theta.sin(), torch.zeros_like(theta)
        affine = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
        src = self.image.expand(batch_size * self.T, *self.image_shape)
        frames = F.grid_sample(src, F.affine_grid(affine, src.shape, align_corners=False), align_corners=False)
        return frames.view(batch_size, self.T, *self.image_shape)

    def state_dict(self):
        return {"rng": self.generator.get_state()}

    def load_state_dict(self, state):
        self.generator.set_state(state["rng"])


def spinning_blobs(spec, *, root, source, split, T, device, seed, shared_transition=False, size=16):
    return SpinningBlobs(T, seed + (0 if split == "train" else 10_000), size, shared_transition)


# -- a toy model: MSP with a diagonal transition (one least-squares scalar per latent column) --
@dataclasses.dataclass
class DiagonalConfig(LstsqConfig):
    eps: float = 1e-6  # ridge of the per-column least squares


class DiagonalMSP(Lstsq):
    """MSP's loss and roll-out (msp.models.Lstsq) with a diagonal least-squares M."""

    Config = DiagonalConfig
    name = "diagonal_msp"

    def transition(self, H):
        """H: (N, T, m, a) -> M: (N, a, a), diagonal."""
        num = (H[:, :-1] * H[:, 1:]).sum(dim=(1, 2))  # (N, a)
        den = (H[:, :-1] ** 2).sum(dim=(1, 2)) + self.cfg.eps
        return torch.diag_embed(num / den)


@pytest.fixture
def toys():
    dataset = registry.register_dataset(registry.DatasetSpec(
        "spinning_blobs", "spinning_blobs", (1, 16, 16), registry.EvalProtocol(2, 6, 5, 5, 8, "test", False),
        spinning_blobs, sources=("embedded",), prepared=False))
    model = registry.register_model(registry.ModelSpec("diagonal_msp", DiagonalMSP, group="msp"))
    yield dataset, model
    registry.unregister("spinning_blobs")
    registry.unregister("diagonal_msp")


def run_msp(argv):
    with pytest.raises(SystemExit) as done:
        msp_main([str(a) for a in argv])
    assert done.value.code == 0


def test_registering_twice_is_an_error_and_unknown_names_list_the_registered(toys):
    with pytest.raises(ValueError, match="already registered"):
        registry.register_model(toys[1])
    with pytest.raises(ValueError, match=r"unknown model 'diagonal'.*'diagonal_msp'"):
        registry.model("diagonal")
    assert registry.model("diagonal_msp").evaluations == ("prediction", "equivariance", "sbd", "samples")
    assert registry.dataset("spinning_blobs").family in registry.families()
    assert "spinning_blobs" not in registry.families(prepared_only=True)


def test_a_new_dataset_and_model_train_and_evaluate_through_the_cli(toys, tmp_path):
    run = {"dataset": {"name": "spinning_blobs", "root": str(tmp_path / "data")},
           "model": {"name": "diagonal_msp", "k": 0.25, "dim_m": 8, "dim_a": 4, "n_blocks": 2, "eps": 1e-5},
           "train": {"iterations": 4, "batch_size": 4, "lr_decay_iter": 3, "checkpoint_every": 2,
                     "log_every": 2, "device": "cpu"}}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(run))
    run_msp(["train", "--config", tmp_path / "run.yaml", "--out", tmp_path / "run", "--no-progress"])
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["model"]["eps"] == 1e-5 and saved["model"]["image_shape"] == [1, 16, 16]

    ckpt = ["--checkpoint", tmp_path / "run" / "model.pt", "--device", "cpu"]
    run_msp(["evaluate", "prediction", *ckpt, "--out", tmp_path / "p.csv", "--batch-size", "4"])
    run_msp(["evaluate", "equivariance", *ckpt, "--out", tmp_path / "e.csv", "--batch-size", "4"])
    pred, equiv = pd.read_csv(tmp_path / "p.csv"), pd.read_csv(tmp_path / "e.csv")
    # the toy's protocol: T_cond 2, prediction T 6, equivariance T 5, 8 sequences in batches of 4
    assert pred.horizon.tolist() == [1, 2, 3, 4] and (pred.n_sequences == 8).all() and (pred.mse > 0).all()
    assert equiv.horizon.tolist() == [1, 2, 3] and (equiv.n_sequences == 8).all()


def test_figure_colours_follow_the_registry_and_are_the_same_in_every_process():
    import subprocess
    import sys

    from msp import figures

    colours = [figures.model_color(m) for m in registry.model_names()]
    assert len(set(colours)) == len(colours) and figures.model_color("neural_trans") == colours[0]
    code = "from msp import figures; print(figures.model_color('not_registered'))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert other.strip() == str(figures.model_color("not_registered"))  # no hash(): no PYTHONHASHSEED
