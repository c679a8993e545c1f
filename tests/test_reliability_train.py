"""Training under hostile conditions (issue catalogue): real signals (SIGINT, SIGTERM among
corrupt checkpoints, SIGKILL of a lock holder), a second writer on the same run, a torn
metrics line and a checkpoint on a really full file system (tmpfs, when mounting is
allowed), and checkpoint files that would run code."""

import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from msp import checkpoint
from msp.checkpoint import UnsafeCheckpointError, checkpoint_paths, load_checkpoint
from msp.runlock import RunLockedError, run_lock
from msp.train import _truncate_metrics, train
from data_files import Exploit
from toys import RotatingBlobs, toy_config

REPO = Path(__file__).resolve().parents[1]


class SignalAt:
    """A data source that sends a real signal to this process on its n-th sample() call."""

    def __init__(self, source, n_calls, signum):
        self.source, self.n_calls, self.calls, self.signum = source, n_calls, 0, signum
        self.image_shape = source.image_shape

    def sample(self, batch_size):
        self.calls += 1
        if self.calls == self.n_calls:
            os.kill(os.getpid(), self.signum)
        return self.source.sample(batch_size)

    def state_dict(self):
        return self.source.state_dict()

    def load_state_dict(self, state):
        self.source.load_state_dict(state)


@pytest.fixture
def terminal_sigint():
    """SIGINT as in a terminal (Python's KeyboardInterrupt handler), even when pytest itself
    was started with SIGINT ignored (under nohup or as a script's background job)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_sigint_writes_a_checkpoint_like_sigterm(tmp_path, capsys, terminal_sigint):
    cfg = toy_config(iterations=12)
    with pytest.raises(SystemExit) as stop:
        train(cfg, tmp_path / "run", sequences=SignalAt(RotatingBlobs(seed=3), 6, signal.SIGINT), progress=False)
    assert stop.value.code == 130
    assert "SIGINT: checkpoint written at step 6" in capsys.readouterr().err
    assert checkpoint_paths(tmp_path / "run")[-1].name == "step_00000006.pt"
    assert not list((tmp_path / "run").rglob(".*tmp*"))
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
    final = train(cfg, tmp_path / "run", sequences=RotatingBlobs(seed=0), progress=False)
    reference = train(cfg, tmp_path / "ref", sequences=RotatingBlobs(seed=3), progress=False)
    a, b = (torch.load(p, weights_only=True)["model"] for p in (final, reference))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_retention_never_deletes_the_only_good_checkpoint(tmp_path, capsys):
    """Restart among corrupt newer checkpoints, SIGTERM: the checkpoint just written stays."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    for step in (100, 200, 300):  # all corrupt, and newer by name than anything we write
        (run / "checkpoints" / f"step_{step:08d}.pt").write_bytes(b"PK\x03\x04 torn")
    cfg = toy_config(iterations=400, keep_checkpoints=2, checkpoint_every=100)
    with pytest.warns(UserWarning, match="unreadable"), pytest.raises(SystemExit):
        train(cfg, run, sequences=SignalAt(RotatingBlobs(seed=3), 16, signal.SIGTERM), progress=False)
    assert "SIGTERM: checkpoint written at step 16" in capsys.readouterr().err
    assert (run / "checkpoints" / "step_00000016.pt").is_file()
    assert checkpoint.read_checkpoint(run / "checkpoints" / "step_00000016.pt")["step"] == 16


def test_malicious_checkpoint_is_refused_by_name_and_never_runs(tmp_path):
    marker = tmp_path / "PWNED"
    evil = tmp_path / "model.pt"
    torch.save({"model": {}, "config": Exploit(marker)}, evil)
    with pytest.raises(UnsafeCheckpointError, match=rf"refused to load {evil}: .*asks to run code"):
        load_checkpoint(evil)
    # through the command line, as a user would call it
    out = subprocess.run([sys.executable, "-m", "msp", "evaluate", "prediction", "--checkpoint", str(evil),
                          "--out", str(tmp_path / "p.csv"), "--device", "cpu"], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert out.returncode == 1 and f"refused to load {evil}" in out.stderr, out.stderr[-2000:]
    # placed among a run's checkpoints: skipped with the same message, never executed
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    os.replace(evil, run / "checkpoints" / "step_00000099.pt")
    with pytest.warns(UserWarning, match="refused to load .*step_00000099.pt"):
        train(toy_config(iterations=4), run, sequences=RotatingBlobs(seed=3), progress=False)
    assert not marker.exists()


HOLD_LOCK = textwrap.dedent("""
    import sys, time
    from msp.runlock import run_lock
    with run_lock(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(120)
""")


def test_second_writer_is_refused_and_a_killed_writers_lock_is_stale(tmp_path, capsys):
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockedError, match=rf"being trained by another msp train \(pid {holder.pid} "):
            train(toy_config(iterations=4), run, sequences=RotatingBlobs(seed=3), progress=False)
        assert not (run / "metrics.jsonl").exists() and not checkpoint_paths(run)
    finally:
        holder.kill()  # a real SIGKILL: the lock file stays behind
        holder.wait(timeout=30)
    assert (run / "train.lock").exists()
    train(toy_config(iterations=4), run, sequences=RotatingBlobs(seed=3), progress=False)
    assert "removing a stale lock" in capsys.readouterr().err
    assert (run / "model.pt").exists() and not (run / "train.lock").exists()


def test_nested_writer_in_the_same_process_is_refused(tmp_path):
    with run_lock(tmp_path / "run"):
        with pytest.raises(RunLockedError, match=f"pid {os.getpid()}"):
            train(toy_config(iterations=4), tmp_path / "run", sequences=RotatingBlobs(seed=3), progress=False)


@pytest.fixture
def tiny_fs(tmp_path):
    """A real 64 KiB file system (tmpfs; needs root and mount permission)."""
    mount = tmp_path / "fs"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root); test_io.py covers the path with a fault-injecting torch.save")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(mount: Path) -> Path:
    """Fill `mount` to the last byte."""
    filler = mount / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 512):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    free = os.statvfs(mount).f_bavail * os.statvfs(mount).f_frsize
    assert free < 4096
    return filler


def test_real_disk_full_checkpoint_names_the_fix_and_leaves_no_temp_file(tiny_fs):
    small = {"model": {"w": torch.ones(4)}, "step": 1}
    checkpoint.save_checkpoint(small, tiny_fs / "ckpt.pt")
    with pytest.raises(OSError, match=r"could not write checkpoint .*ckpt.pt .*free disk space"):
        checkpoint.save_checkpoint({"model": {"w": torch.ones(40000)}, "step": 2}, tiny_fs / "ckpt.pt")
    assert sorted(p.name for p in tiny_fs.iterdir()) == ["ckpt.pt"]
    assert checkpoint.read_checkpoint(tiny_fs / "ckpt.pt")["step"] == 1


def test_torn_metrics_line_from_a_full_disk_is_dropped_on_resume(tiny_fs, capsys):
    metrics = tiny_fs / "metrics.jsonl"
    metrics.write_text("".join(json.dumps({"step": s, "loss": 1.0 / s}) + "\n" for s in (2, 4, 6)))
    filler = fill(tiny_fs)
    row = json.dumps({"step": 8, "loss": 0.125, "pad": "x" * 6000}) + "\n"
    with pytest.raises(OSError):
        with open(metrics, "a") as f:  # how training appends
            f.write(row)
    torn = metrics.read_text()
    assert not torn.endswith("\n"), "the disk filled before the line was complete"
    filler.unlink()  # the user frees space and reruns
    _truncate_metrics(metrics, step=8)
    assert "dropping a torn last line" in capsys.readouterr().err
    assert [json.loads(x)["step"] for x in metrics.read_text().splitlines()] == [2, 4, 6]


def test_broken_metrics_line_in_the_middle_is_named(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text('{"step": 2}\n{"st\n{"step": 4}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl: line 2 is not a metrics record"):
        _truncate_metrics(metrics, step=4)


def test_plain_pickle_checkpoint_is_refused_too(tmp_path):
    marker = tmp_path / "PWNED"
    with open(tmp_path / "old.pt", "wb") as f:
        pickle.dump({"step": Exploit(marker)}, f)
    with pytest.raises(UnsafeCheckpointError, match="old.pt"):
        checkpoint.read_checkpoint(tmp_path / "old.pt")
    assert not marker.exists()


def test_import_authors_never_overwrites_a_model_without_force(tmp_path):
    import argparse

    from msp import authors_checkpoint
    from authors_like import make_pair

    _, _, ref = make_pair("neural_trans")
    snapshot = tmp_path / "snapshot_model_iter_300"
    torch.save(ref.state_dict(), snapshot)
    trained = tmp_path / "run" / "model.pt"
    trained.parent.mkdir()
    trained.write_bytes(b"days of training")
    parser = argparse.ArgumentParser()
    authors_checkpoint.add_arguments(parser)
    argv = ["--snapshot", str(snapshot), "--dataset", "mnist", "--model", "neural_trans", "--dim-m", "16",
            "--dim-a", "4", "--k", "0.25", "--out", str(trained)]
    with pytest.raises(FileExistsError, match=r"model.pt exists .*refusing to overwrite it.*--force"):
        authors_checkpoint.main(parser.parse_args(argv))
    assert trained.read_bytes() == b"days of training"
    assert authors_checkpoint.main(parser.parse_args(argv + ["--force"])) == 0
    assert load_checkpoint(trained)[1]["model"]["name"] == "neural_trans"


def test_execution_details_change_on_resume_but_the_experiment_does_not(tmp_path):
    from msp.config import apply_execution
    from toys import FailingAfter

    cfg = toy_config(iterations=12)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "run", sequences=FailingAfter(RotatingBlobs(seed=3), 7), progress=False)
    moved = apply_execution(toy_config(iterations=12), ["dataset.root=elsewhere", "train.log_every=3",
                                                        "train.device=cpu"])
    train(moved, tmp_path / "run", sequences=RotatingBlobs(seed=3), progress=False)  # resumes: same experiment
    with pytest.raises(ValueError, match=r"--set 'train.lr=0.1': only execution details"):
        apply_execution(toy_config(), ["train.lr=0.1"])


def test_run_yaml_holds_the_experiment_only():
    from pathlib import Path as P

    from msp import runs

    paper = yaml_load(P(__file__).resolve().parents[1] / "configs/config.yaml")
    identity = yaml_load_text(runs.run_config_yaml(paper, "mnist", "lstsq", 1))
    assert "root" not in identity["dataset"] and identity["dataset"]["source"] == paper["data"]["source"]
    assert not {"log_every", "device", "checkpoint_every", "faithful", "amp"} & set(identity["train"])
    assert identity["train"]["lr"] == paper["train"]["lr"]
    flags = runs.execution_flags(paper)
    assert "--set 'dataset.root=" in flags and "train.log_every=" in flags


def yaml_load(path):
    import yaml

    return yaml.safe_load(Path(path).read_text())


def yaml_load_text(text):
    import yaml

    return yaml.safe_load(text)


def test_deleted_model_pt_is_rewritten_from_the_final_checkpoint_without_training(tmp_path, capsys):
    from toys import FailingAfter

    cfg = toy_config(iterations=12)
    model = train(cfg, tmp_path / "run", sequences=RotatingBlobs(seed=3), progress=False)
    before = torch.load(model, weights_only=True)["model"]
    model.unlink()  # e.g. Snakemake deleting it before a rerun
    # a source that fails on its first sample: any training step would raise
    again = train(cfg, tmp_path / "run", sequences=FailingAfter(RotatingBlobs(seed=3), 1), progress=False)
    after = torch.load(again, weights_only=True)["model"]
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert "(step 12)" in capsys.readouterr().err


def test_an_ignored_sigint_stays_ignored(tmp_path):
    """A run started with SIGINT ignored (`nohup`, a background job of a script) is not stopped by it."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        path = train(toy_config(iterations=8), tmp_path / "run", sequences=SignalAt(RotatingBlobs(seed=3), 4, signal.SIGINT),
                     progress=False)
        assert path.name == "model.pt" and torch.load(path, weights_only=True)["step"] == 8
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
