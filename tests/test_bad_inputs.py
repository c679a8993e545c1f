"""The catalogue of bad inputs (README, Troubleshooting): each gets a clear error that names
the thing and the fix, and nothing finished is lost. Cases tested elsewhere are listed in
the README with their test; here are the ones reached through the `msp` command line."""

import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from toys import RotatingBlobs


def msp(*args, cwd=None):
    proc = subprocess.run([sys.executable, "-m", "msp", *map(str, args)], capture_output=True, text=True, cwd=cwd)
    return proc.returncode, proc.stderr


def run_config(tmp_path, **changes):
    cfg = {"dataset": {"name": "mnist", "source": "embedded", "root": str(tmp_path / "data")},
           "model": {"name": "lstsq", "k": 0.25, "dim_m": 8, "dim_a": 4},
           "train": {"iterations": 2, "batch_size": 2, "device": "cpu"}}
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        cfg[section][key] = value
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize("changes, message", [
    ({"train__iteratons": 5}, r"unknown key\(s\) \['iteratons'\] in section 'train'"),
    ({"train__iterations": "many"}, r"train.iterations must be of type int, got 'many'"),
    ({"model__name": "lstq"}, r"unknown model 'lstq': choose one of"),
    ({"dataset__name": "mnist3d"}, r"unknown dataset.name 'mnist3d': choose one of"),
    ({"model__dim_m": "big"}, r"model.dim_m must be of type int"),
    pytest.param({"train__device": "cuda:0"}, r"CUDA requested \(device 'cuda:0'\) but not available.*--device cpu",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")),
    ({"train__device": "gpu"}, r"unknown device 'gpu': use auto"),
])
def test_bad_run_config_is_named_before_training(tmp_path, changes, message):
    import re

    code, stderr = msp("train", "--config", run_config(tmp_path, **changes), "--out", tmp_path / "out")
    assert code == 1 and re.search(message, stderr), stderr
    assert "Traceback" not in stderr
    assert not (tmp_path / "out" / "model.pt").exists()


def test_missing_data_root_says_how_to_download_or_place_files(tmp_path):
    code, stderr = msp("train", "--config", run_config(tmp_path, dataset__source="drive"), "--out", tmp_path / "out")
    assert code == 1
    assert "prepared.json missing" in stderr and "msp data download" in stderr, stderr


def test_prepared_array_with_wrong_shape_is_named(tmp_path):
    from msp.data import DataError, build_sequences

    build_sequences("mnist", root=tmp_path, source="embedded", T=3)
    arrays = sorted((tmp_path / "prepared" / "embedded" / "mnist").glob("*.npy"))
    np.save(arrays[0], np.zeros((3, 5), dtype=np.uint8))
    with pytest.raises(DataError, match=rf"{arrays[0].name}.*differs from .*prepared.json"):
        build_sequences("mnist", root=tmp_path, source="embedded", T=3)


def test_evaluating_an_untrained_run_names_the_checkpoint(tmp_path):
    missing = tmp_path / "results" / "mnist" / "lstsq" / "seed1" / "model.pt"
    code, stderr = msp("evaluate", "prediction", "--checkpoint", missing, "--out", tmp_path / "pred.csv")
    assert code == 1
    assert str(missing) in stderr and "train the run first" in stderr, stderr
    assert not (tmp_path / "pred.csv").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_evaluate_on_cuda_without_cuda_names_the_fix(tmp_path):
    code, stderr = msp("evaluate", "prediction", "--checkpoint", tmp_path / "model.pt", "--out", tmp_path / "p.csv",
                       "--device", "cuda")
    assert code == 1 and "Traceback" not in stderr and "AssertionError" not in stderr, stderr
    assert "CUDA requested (device 'cuda') but not available" in stderr and "--device cpu" in stderr, stderr


def test_finished_run_is_never_overwritten(tmp_path):
    from msp.train import train

    cfg = yaml.safe_load(run_config(tmp_path).read_text())
    cfg["model"]["n_blocks"] = 2
    final = train(cfg, tmp_path / "run", sequences=RotatingBlobs(seed=1), progress=False)
    before = final.read_bytes()
    cfg["train"]["iterations"] = 50  # even with a changed config: finished results stay
    assert train(cfg, tmp_path / "run", sequences=RotatingBlobs(seed=1), progress=False) == final
    assert final.read_bytes() == before
