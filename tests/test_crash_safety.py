"""Crash safety of `msp train`: SIGKILL and SIGTERM mid-run, disk full, determinism (CPU)."""

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from msp import train as train_module
from msp.checkpoint import checkpoint_paths
from msp.train import train
from toys import RotatingBlobs

pytestmark = pytest.mark.slow


def write_config(tmp_path, iterations=150):
    cfg = {
        "dataset": {"name": "mnist", "source": "embedded", "root": str(tmp_path / "data")},
        "model": {"name": "lstsq", "k": 0.25, "dim_m": 16, "dim_a": 4},
        "train": {"iterations": iterations, "batch_size": 8, "lr_decay_iter": iterations // 2,
                  "checkpoint_every": 10, "log_every": 5, "seed": 7, "device": "cpu"},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def start(config, out):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "msp", "train", "--config", str(config), "--out", str(out), "--no-progress"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_checkpoint(out, proc, timeout=120):
    deadline = time.monotonic() + timeout
    while not checkpoint_paths(out):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)


def run_to_end(config, out):
    proc = start(config, out)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    return stderr


def same_result(out_a, out_b):
    a = torch.load(out_a / "model.pt", weights_only=False)
    b = torch.load(out_b / "model.pt", weights_only=False)
    assert a["step"] == b["step"]
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    rows = [[{k: v for k, v in json.loads(x).items() if k != "seconds"} for x in (o / "metrics.jsonl").read_text().splitlines()]
            for o in (out_a, out_b)]
    assert rows[0] == rows[1]


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reference")
    config = write_config(tmp)
    run_to_end(config, tmp / "out")
    return tmp, config


def test_sigkill_at_a_random_point_resumes_to_identical_weights_and_metrics(reference_run, tmp_path):
    ref_dir, config = reference_run
    out = tmp_path / "killed"
    proc = start(config, out)
    wait_for_checkpoint(out, proc)
    time.sleep(random.Random().uniform(0.0, 1.0))  # a random point after the first checkpoint
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert not (out / "model.pt").exists()
    killed_at = max(json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines())
    stderr = run_to_end(config, out)
    assert "resuming" in stderr
    same_result(ref_dir / "out", out)
    assert killed_at < 150


def test_sigterm_writes_a_checkpoint_then_exits(reference_run, tmp_path):
    ref_dir, config = reference_run
    out = tmp_path / "terminated"
    proc = start(config, out)
    wait_for_checkpoint(out, proc)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr
    assert "SIGTERM: checkpoint written at step" in stderr
    step = int(stderr.split("checkpoint written at step ")[1].split(";")[0])
    assert checkpoint_paths(out)[-1].name == f"step_{step:08d}.pt"
    run_to_end(config, out)
    same_result(ref_dir / "out", out)


def test_rerun_of_a_finished_run_changes_nothing(reference_run):
    ref_dir, config = reference_run
    before = (ref_dir / "out" / "model.pt").stat().st_mtime_ns
    stderr = run_to_end(config, ref_dir / "out")
    assert "training is complete" in stderr
    assert (ref_dir / "out" / "model.pt").stat().st_mtime_ns == before


def test_disk_full_while_checkpointing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    from toys import toy_config

    cfg = toy_config(iterations=12)
    real_save, calls = torch.save, []

    def full_disk_save(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the second checkpoint hits a full disk half-way
            f.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(train_module.torch, "save", full_disk_save)
    with pytest.raises(OSError, match=r"could not write checkpoint .*step_00000008.pt .*free disk space"):
        train(cfg, tmp_path / "run", sequences=RotatingBlobs(seed=3), progress=False)
    names = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert names == ["step_00000004.pt"], "no temp file left, the previous checkpoint intact"
    monkeypatch.setattr(train_module.torch, "save", real_save)
    train(cfg, tmp_path / "run", sequences=RotatingBlobs(seed=3), progress=False)
    reference = train(cfg, tmp_path / "ref", sequences=RotatingBlobs(seed=3), progress=False)
    a, b = (torch.load(p, weights_only=False)["model"] for p in (reference, tmp_path / "run" / "model.pt"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_killed_snakemake_continues_without_retraining_finished_runs(tmp_path):
    """SIGKILL of the whole snakemake process group while the second of two trainings runs;
    after `--unlock`, `--rerun-incomplete` resumes the second and leaves the first alone.

    Deterministic: the first run (prioritized, so it runs first on one core) is short; the
    second is too long to ever finish before the kill, which waits on files and the process,
    never on elapsed time. The rerun shortens the second run (iterations may change on resume)."""
    from workflow_helpers import snakemake, tiny_demo

    config = tiny_demo(tmp_path)
    cfg = yaml.safe_load(config.read_text())
    demo = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs" / "demo.yaml").read_text())
    cfg["datasets"]["mnist"].update(iterations=20, lr_decay_iter=10, models={"lstsq": {}})
    cfg["datasets"]["mnist_bg"] = {**cfg["datasets"]["mnist"], "models": {"lstsq": {}},
                                   "network": demo["datasets"]["mnist_bg"]["network"] | {"dim_m": 8, "k": 0.125},
                                   "iterations": 10**6}
    cfg["train"].update(checkpoint_every=5, log_every=5)
    config.write_text(yaml.safe_dump(cfg))
    first, second = (tmp_path / f"results/{d}/lstsq/seed1" for d in ("mnist", "mnist_bg"))
    targets = [str(p.relative_to(tmp_path) / "model.pt") for p in (first, second)]
    # targets before --configfile, which takes several values
    cmd = [sys.executable, "-m", "snakemake", "-s", "Snakefile", "--directory", str(tmp_path), *targets,
           "--prioritize", targets[0], "--cores", "1", "--replace-workflow-config", "--configfile", str(config)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    while not ((first / "model.pt").exists() and checkpoint_paths(second)):
        assert proc.poll() is None, "the workflow ended before the second training wrote a checkpoint"
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (second / "model.pt").exists()
    stamp = (first / "model.pt").stat().st_mtime_ns
    cfg["datasets"]["mnist_bg"]["iterations"] = 30
    config.write_text(yaml.safe_dump(cfg))
    assert snakemake(tmp_path, *targets, "--unlock", "--configfile", str(config)).returncode == 0
    resume_from = int(checkpoint_paths(second)[-1].stem.split("_")[1])
    result = snakemake(tmp_path, *targets, "--cores", "1", "--rerun-incomplete", "--configfile", str(config))
    assert result.returncode == 0, result.stderr[-3000:]
    assert (first / "model.pt").stat().st_mtime_ns == stamp, "a finished run was retrained"
    assert f"(step {resume_from})" in (second / "train.log").read_text()
    assert torch.load(second / "model.pt", weights_only=True)["step"] == max(30, resume_from)
