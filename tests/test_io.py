"""msp.io (atomic writes) and msp.checkpoint (save / load with weights_only=True)."""

import errno
import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from msp import checkpoint, io


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_every_writer_round_trips_and_leaves_no_temp_file(tmp_path):
    io.write_text(tmp_path / "a" / "t.txt", "hello\n")  # creates the missing folder
    io.write_json(tmp_path / "j.json", {"b": 1, "a": [1, 2]}, sort_keys=True)
    io.write_yaml(tmp_path / "y.yaml", {"b": 1, "a": "x"})
    io.write_csv(tmp_path / "c.csv", pd.DataFrame({"x": [1, 2], "y": [0.5, 1.5]}))
    io.save_array(tmp_path / "v.npy", np.arange(6).reshape(2, 3).T)
    io.save_npz(tmp_path / "z.npz", {"u": np.ones(3)})
    io.torch_save({"w": torch.arange(3)}, tmp_path / "w.pt")
    fig = plt.figure()
    io.save_figure(fig, tmp_path / "f.png")
    plt.close(fig)
    assert (tmp_path / "a" / "t.txt").read_text() == "hello\n"
    assert (tmp_path / "j.json").read_text().startswith('{\n  "a"') and json.loads((tmp_path / "j.json").read_text())["b"] == 1
    assert list(yaml.safe_load((tmp_path / "y.yaml").read_text())) == ["b", "a"]  # key order kept
    assert pd.read_csv(tmp_path / "c.csv").y.tolist() == [0.5, 1.5]
    np.testing.assert_array_equal(np.load(tmp_path / "v.npy"), np.arange(6).reshape(2, 3).T)
    assert np.load(tmp_path / "z.npz")["u"].sum() == 3
    assert torch.equal(torch.load(tmp_path / "w.pt", weights_only=True)["w"], torch.arange(3))
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"
    assert leftovers(tmp_path) == [] and leftovers(tmp_path / "a") == []


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"),
                                   RuntimeError("PytorchStreamWriter failed writing file"), KeyboardInterrupt()])
def test_a_failed_write_keeps_the_old_file_and_removes_the_temp_file(tmp_path, error):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(type(error)):
        with io.atomic_open(target, "w") as f:
            f.write("half of the new")
            raise error
    assert target.read_text() == "old" and leftovers(tmp_path) == []


def test_checkpoint_on_a_full_disk_is_a_clear_oserror_and_no_temp_file(tmp_path, monkeypatch):
    def full(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc] PytorchStreamWriter failed writing file")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(OSError, match=r"could not write checkpoint .*ckpt.pt .*free disk space"):
        checkpoint.save_checkpoint({"step": 1}, tmp_path / "ckpt.pt")
    assert list(tmp_path.iterdir()) == []


def test_own_checkpoints_load_without_unpickling_code(tmp_path):
    plain = {"model": {"w": torch.ones(2)}, "step": 3, "config": {"train": {"lr": 1e-3}},
             "rng": {"torch": torch.get_rng_state(), "cuda": None}}
    checkpoint.save_checkpoint(plain, tmp_path / "ok.pt")
    assert checkpoint.read_checkpoint(tmp_path / "ok.pt")["step"] == 3
    torch.save({"model": {}, "config": pd.Timestamp(0)}, tmp_path / "object.pt")  # an arbitrary pickled object
    with pytest.raises(Exception, match="weights_only"):
        checkpoint.read_checkpoint(tmp_path / "object.pt")
