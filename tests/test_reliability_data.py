"""Downloads and raw data under hostile conditions (issue catalogue "nothing stuck"): servers
that never answer, stall mid-body or trickle (real sockets on 127.0.0.1, each stops by
itself), a Drive HTML page in place of the archive, an unpack killed by a real SIGKILL,
raw files changed in place, and pickles that would run code."""

import http.server
import io
import json
import os
import pickle
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from msp.data import sources
from msp.data.prepare import load_prepared, prepare
from msp.data.readers import DataError, load_torch_object
from msp.data.sources import download, raw_dir
from msp.data.transfer import DownloadTimeout
from data_files import Exploit, make_tar, run_cli, synthetic_mnist_files, torch_bytes

REPO = Path(__file__).resolve().parents[1]
STALL_LIMIT = 20.0  # every stalling handler gives up after this many seconds


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.delenv(sources.DRIVE_URL_ENV, raising=False)


class StallingHandler(http.server.BaseHTTPRequestHandler):
    """/stall: headers and 100 of 100000 bytes, then silence; /trickle: one byte every
    0.05 s; /html: a Drive quota page; /good/NAME: the archive. Every wait ends when the
    fixture's `stop` event is set or after STALL_LIMIT seconds."""

    def do_GET(self):
        if self.path.startswith("/good/"):
            data = self.server.archive
        elif self.path.startswith("/html/"):
            data = (b"<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title>"
                    b"</head><body>Too many users have viewed or downloaded this file.</body></html>")
        else:
            data = None
        if data is not None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        self.send_response(200)
        self.send_header("Content-Length", "100000")
        self.end_headers()
        stop, t0 = self.server.stop, time.monotonic()
        try:
            if self.path.startswith("/stall/"):
                self.wfile.write(b"\0" * 100)
                self.wfile.flush()
                stop.wait(STALL_LIMIT)
            else:  # trickle: never silent for long, never done
                while not stop.is_set() and time.monotonic() - t0 < STALL_LIMIT:
                    self.wfile.write(b"\0")
                    self.wfile.flush()
                    stop.wait(0.05)
        except OSError:
            pass  # the client gave up: fine

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def archive_bytes(tmp_path_factory):
    idx = synthetic_mnist_files(tmp_path_factory.mktemp("idx"))
    path = make_tar(tmp_path_factory.mktemp("tar") / "MNIST.tar.gz",
                    {f"MNIST/raw/{name}": p.read_bytes() for name, p in idx.items()})
    return path.read_bytes()


@pytest.fixture(scope="module")
def hostile_server(archive_bytes):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), StallingHandler)
    httpd.daemon_threads = True
    httpd.stop, httpd.archive = threading.Event(), archive_bytes
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.stop.set()
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def silent_server():
    """Accepts connections (the kernel completes the handshake) and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()


def leftovers(root: Path) -> list[Path]:
    return [p for p in (root / "raw").rglob("*") if p.is_file()] if (root / "raw").exists() else []


def test_server_that_never_answers_fails_after_the_read_timeout(silent_server, tmp_path):
    with pytest.raises(DownloadTimeout, match=r"MNIST.tar.gz .*did not answer for 1 s"):
        download("mnist", tmp_path, "drive", base_url=silent_server + "/", timeout=1, deadline=60)
    assert leftovers(tmp_path) == []
    assert not list(raw_dir(tmp_path, "drive", "mnist").glob(".*"))  # no .part folder


def test_server_stalling_mid_body_fails_after_the_read_timeout(hostile_server, tmp_path):
    with pytest.raises(DownloadTimeout, match="did not answer for 1 s"):
        download("mnist", tmp_path, "drive", base_url=hostile_server + "/stall/", timeout=1,
                 deadline=60)
    assert leftovers(tmp_path) == [] and not list(raw_dir(tmp_path, "drive", "mnist").glob(".*"))


def test_trickling_server_fails_at_the_deadline(hostile_server, tmp_path):
    with pytest.raises(DownloadTimeout, match="deadline of 1 s"):
        download("mnist", tmp_path, "drive", base_url=hostile_server + "/trickle/", timeout=5,
                 deadline=1)
    assert leftovers(tmp_path) == [] and not list(raw_dir(tmp_path, "drive", "mnist").glob(".*"))


def test_cli_download_has_timeout_and_deadline_flags(silent_server, tmp_path, capsys):
    assert run_cli("download", "--dataset", "mnist", "--root", str(tmp_path), "--source", "drive",
                   "--base-url", silent_server, "--timeout", "1", "--deadline", "30") == 1
    assert "did not answer for 1 s" in capsys.readouterr().err


def test_drive_html_page_is_named_not_called_a_corrupt_archive(hostile_server, tmp_path):
    with pytest.raises(DataError, match=r"received an HTML page \('google drive - quota "
                                        r"exceeded'\) instead of the archive MNIST.tar.gz"):
        download("mnist", tmp_path, "drive", base_url=hostile_server + "/html/")
    assert leftovers(tmp_path) == []


KILL_DURING_UNPACK = textwrap.dedent("""
    import os, signal, sys, tarfile
    from msp.data import sources
    real = tarfile.copyfileobj
    def copy_half_then_die(src, dst, length=None, *args, **kwargs):
        real(src, dst, length // 2, *args, **kwargs)
        dst.flush()
        os.kill(os.getpid(), signal.SIGKILL)  # a real kill, half-way through a member
    tarfile.copyfileobj = copy_half_then_die
    sources.download("mnist", sys.argv[1], "drive", base_url=sys.argv[2])
""")


def test_unpack_killed_by_sigkill_heals_on_the_next_download(hostile_server, tmp_path):
    root = tmp_path / "data"
    killed = subprocess.run([sys.executable, "-c", KILL_DURING_UNPACK, str(root),
                             hostile_server + "/good/"], env={**os.environ, "PYTHONPATH": str(REPO)},
                            capture_output=True, timeout=120)
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    raw = raw_dir(root, "drive", "mnist")
    assert not (raw / "manifest.json").exists()
    assert list(raw.glob(".unpack-*"))  # the half-written member is still there
    manifest = download("mnist", root, "drive", base_url=hostile_server + "/good/")
    listed = [e["path"] for e in json.loads(manifest.read_text())["files"]]
    assert listed and not any(part.startswith(".") for p in listed for part in Path(p).parts)
    assert not list(raw.glob(".unpack-*"))
    prepare("mnist", root, "drive")
    _, arrays = load_prepared("mnist", root, "drive")
    assert arrays["train_images"].shape == (60000, 28, 28)


def test_prepare_checks_raw_content_not_only_sizes(hostile_server, tmp_path, capsys):
    """prepare verified sizes only: a file whose sha256 differs from the manifest's (same
    size) was prepared, though download and verify refuse it."""
    manifest = download("mnist", tmp_path, "drive", base_url=hostile_server + "/good/")
    entries = json.loads(manifest.read_text())
    entry = next(e for e in entries["files"] if e["path"].endswith("t10k-labels-idx1-ubyte.gz"))
    entry["sha256"] = "0" * 64
    manifest.write_text(json.dumps(entries))
    assert run_cli("prepare", "--dataset", "mnist", "--root", str(tmp_path), "--source", "drive") == 1
    assert "t10k-labels-idx1-ubyte.gz: size or sha256 differs" in capsys.readouterr().err
    assert not (tmp_path / "prepared/drive/mnist/prepared.json").exists()


def test_torn_or_incomplete_manifest_is_refused_by_name(hostile_server, tmp_path):
    manifest = download("mnist", tmp_path, "drive", base_url=hostile_server + "/good/")
    text = manifest.read_text()
    manifest.write_text(text[: len(text) // 2])
    with pytest.raises(DataError, match="manifest.json: unreadable manifest"):
        download("mnist", tmp_path, "drive")
    entries = json.loads(text)
    entries["files"] = entries["files"][1:]
    manifest.write_text(json.dumps(entries))
    with pytest.raises(DataError, match="does not list .*the download was incomplete"):
        prepare("mnist", tmp_path, "drive", force=True)


def test_malicious_pickle_in_the_archive_never_runs(tmp_path):
    marker = tmp_path / "PWNED"
    evil = tmp_path / "train_dat.pt"
    torch.save({"backgrounds": Exploit(marker)}, evil)
    with pytest.raises(DataError, match=r"train_dat.pt: refused to load.*not plain data"):
        load_torch_object(evil)
    assert not marker.exists()
    # plain pickle of the same object (not a torch zip file): refused too
    with open(evil, "wb") as stream:
        pickle.dump(Exploit(marker), stream)
    with pytest.raises(DataError, match="train_dat.pt: refused to load"):
        load_torch_object(evil)
    assert not marker.exists()


def test_archive_pickles_of_tensors_and_numpy_arrays_still_load(tmp_path):
    """What the authors' archive holds (tensors, numpy arrays, lists of them) is data."""
    for name, obj in {"t": torch.rand(4, 3, 32, 32), "n": np.arange(12, dtype=np.uint8).reshape(3, 4),
                      "l": [np.zeros((3, 32, 32), np.float32), np.ones((3, 32, 32), np.float32)]}.items():
        path = tmp_path / f"{name}.pt"
        path.write_bytes(torch_bytes(obj))
        loaded = load_torch_object(path)
        assert type(loaded) is type(obj)
    assert np.array_equal(load_torch_object(tmp_path / "n.pt"), np.arange(12).reshape(3, 4))


@pytest.fixture(scope="module")
def idx_members(tmp_path_factory):
    idx = synthetic_mnist_files(tmp_path_factory.mktemp("idx_bg"))
    return {f"MNIST/raw/{name}": p.read_bytes() for name, p in idx.items()}


@pytest.mark.parametrize("backgrounds,message", [
    (torch.full((60, 3, 32, 32), -3.4e38), r"train_backgrounds values in \[-3.4e\+38"),
    (torch.arange(60 * 3 * 32 * 32).reshape(60, 3, 32, 32) % 5, "train_backgrounds has dtype int64"),
])
def test_prepare_refuses_backgrounds_a_real_archive_never_holds(idx_members, tmp_path, backgrounds,
                                                                message):
    raw = raw_dir(tmp_path, "drive", "mnist_bg")
    raw.mkdir(parents=True)
    make_tar(raw / "MNIST.tar.gz", {**idx_members, "MNIST/train_dat.pt": torch_bytes(backgrounds),
                                    "MNIST/test_dat.pt": torch_bytes(torch.full((10, 3, 32, 32), 0.5))})
    download("mnist_bg", tmp_path, "drive")  # placed by hand
    with pytest.raises(DataError, match=message):
        prepare("mnist_bg", tmp_path, "drive")
    assert not (tmp_path / "prepared/drive/mnist_bg/prepared.json").exists()


def test_prepared_arrays_changed_in_place_fail_verify_and_training(tmp_path, capsys):
    from msp.train import build_training_sequences

    root = tmp_path / "data"
    assert run_cli("prepare", "--dataset", "mnist", "--root", str(root), "--source", "embedded") == 0
    assert run_cli("verify", "--dataset", "mnist", "--root", str(root), "--source", "embedded") == 0
    images = np.load(root / "prepared/embedded/mnist/train_images.npy", mmap_mode="r+")
    images[:] = 0  # zeroed: same shape, same dtype, same size
    images.flush()
    del images
    assert run_cli("verify", "--dataset", "mnist", "--root", str(root), "--source", "embedded") == 1
    assert "train_images.npy: sha256 differs" in capsys.readouterr().err
    cfg = {"dataset": {"name": "mnist", "root": str(root), "source": "embedded", "options": {}},
           "model": {"T_cond": 2, "T_pred": 1}, "train": {"seed": 0}}
    with pytest.raises(DataError, match="train_images.npy: sha256 differs"):
        build_training_sequences(cfg, torch.device("cpu"))
