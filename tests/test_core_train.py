"""The training run: learning on planted dynamics, resume equivalence, NaN handling, CLI."""

import json

import pytest
import torch
import yaml

from msp.checkpoint import checkpoint_paths, load_checkpoint, recorded_machines
from msp.train import NonFiniteLossError, train
from toys import FailingAfter, NaNAfter, RotatingBlobs, toy_config


def final_weights(path):
    return torch.load(path, weights_only=False)["model"]


def test_same_seed_same_weights_and_resume_equivalence(tmp_path):
    cfg = toy_config()
    a = train(cfg, tmp_path / "a", sequences=RotatingBlobs(seed=3), progress=False)
    b = train(cfg, tmp_path / "b", sequences=RotatingBlobs(seed=3), progress=False)
    with pytest.raises(KeyboardInterrupt):  # killed during step 7: checkpoint of step 4 exists
        train(cfg, tmp_path / "c", sequences=FailingAfter(RotatingBlobs(seed=3), 7), progress=False)
    assert [p.name for p in checkpoint_paths(tmp_path / "c")] == ["step_00000004.pt"]
    assert not (tmp_path / "c" / "model.pt").exists()
    c = train(cfg, tmp_path / "c", sequences=RotatingBlobs(seed=99), progress=False)  # state comes from the checkpoint
    wa, wb, wc = final_weights(a), final_weights(b), final_weights(c)
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key
        assert torch.equal(wa[key], wc[key]), key
    rows_a = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    rows_c = [json.loads(x) for x in (tmp_path / "c" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows_c] == [r["step"] for r in rows_a] == [2, 4, 6, 8, 10, 12]
    assert [r["loss"] for r in rows_c] == [r["loss"] for r in rows_a]
    assert rows_a[-1]["lr"] == pytest.approx(1e-3 / 3) and rows_a[0]["lr"] == 1e-3
    assert {"loss", "loss_internal_0", "loss_internal_T", "loss_bd", "loss_orth", "seconds"} <= set(rows_a[-1])
    # where each training session ran: one for a, two for c (started, then resumed at step 4)
    assert [m["from_step"] for m in recorded_machines(a)] == [0]
    assert [m["from_step"] for m in recorded_machines(c)] == [0, 4]
    assert recorded_machines(c)[1] == {**recorded_machines(a)[0], "from_step": 4}


def test_truncated_checkpoint_falls_back_to_previous(tmp_path):
    cfg = toy_config(iterations=12, keep_checkpoints=3)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "run", sequences=FailingAfter(RotatingBlobs(seed=3), 10), progress=False)
    paths = checkpoint_paths(tmp_path / "run")
    assert [p.name for p in paths] == ["step_00000004.pt", "step_00000008.pt"]
    paths[-1].write_bytes(paths[-1].read_bytes()[:100])  # truncated newest checkpoint
    with pytest.warns(UserWarning, match="step_00000008.pt is unreadable"):
        final = train(cfg, tmp_path / "run", sequences=RotatingBlobs(seed=3), progress=False)
    reference = train(cfg, tmp_path / "ref", sequences=RotatingBlobs(seed=3), progress=False)
    for key, value in final_weights(reference).items():
        assert torch.equal(value, final_weights(final)[key])


def test_nan_loss_stops_with_step_and_keeps_last_checkpoint(tmp_path):
    cfg = toy_config(iterations=12, log_every=1)
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at step 5 .*step_00000004.pt"):
        train(cfg, tmp_path / "run", sequences=NaNAfter(RotatingBlobs(seed=3), 6), progress=False)
    model, loaded_cfg = load_checkpoint(checkpoint_paths(tmp_path / "run")[-1])
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert not (tmp_path / "run" / "model.pt").exists()


def test_msp_learns_planted_rotations():
    """Prediction loss on a rotating-blob toy set halves within a few hundred CPU steps."""
    torch.manual_seed(0)
    cfg = toy_config(iterations=300, lr=2e-3, lr_decay_iter=300)["model"]
    from msp.models import build_model

    source = RotatingBlobs(seed=5)
    model = build_model(cfg, source.image_shape)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    held_out = RotatingBlobs(seed=777).sample(64)

    def held_out_loss():
        with torch.no_grad():
            return model.loss(held_out)[0].item()

    start = held_out_loss()
    for _ in range(300):
        loss, _ = model.loss(source.sample(16))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert held_out_loss() < 0.5 * start


def test_cli_train_resumes_and_finishes(tmp_path, monkeypatch):
    from msp.cli import main

    cfg = toy_config(iterations=4)
    cfg["model"].update(n_blocks=3)
    cfg["dataset"]["root"] = str(tmp_path / "data")
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--config", str(path), "--out", str(tmp_path / "out"), "--no-progress"])
    assert exit_info.value.code == 0
    model, loaded = load_checkpoint(tmp_path / "out" / "model.pt")
    assert loaded["model"]["image_shape"] == [3, 32, 32]
    assert loaded["train"]["iterations"] == 4


def test_bad_config_names_the_key(tmp_path):
    from msp.cli import main

    cfg = toy_config()
    cfg["train"]["iteratons"] = 5
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['iteratons'\] in section 'train'"):
        from msp.config import load_run_config

        load_run_config(path)
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--config", str(path), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 1


def test_fast_and_faithful_numerics_agree_over_a_short_run(tmp_path):
    """Fused residual blocks are exact reformulations: losses agree to float32 round-off."""
    cfg = toy_config(iterations=10, log_every=1, checkpoint_every=100)
    cfg["model"]["n_blocks"] = 2
    rows = {}
    for faithful in (True, False):
        cfg["train"]["faithful"] = faithful
        out = tmp_path / f"faithful{faithful}"
        train(cfg, out, sequences=RotatingBlobs(seed=3), progress=False)
        rows[faithful] = [json.loads(x)["loss"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows[True]) == len(rows[False]) == 10
    for a, b in zip(rows[True], rows[False]):
        assert a == pytest.approx(b, rel=1e-4)


def test_resume_refuses_checkpoints_of_another_config(tmp_path):
    cfg = toy_config(iterations=12)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "run", sequences=FailingAfter(RotatingBlobs(seed=3), 6), progress=False)
    changed = toy_config(iterations=20, lr_decay_iter=6)  # more iterations may resume ...
    changed["train"]["lr"] = 5e-4  # ... but another learning rate would mix two runs
    with pytest.raises(ValueError, match=r"different config \(train.lr: 0.001 -> 0.0005\).*delete .*checkpoints"):
        train(changed, tmp_path / "run", sequences=RotatingBlobs(seed=3), progress=False)
