"""Download paths end to end: the authors' archive through gdown from a local HTTP server
on 127.0.0.1 (good, truncated, short, malicious and oddly laid out tarballs), the
official files with their MD5 sums, manifests, reuse, hand-placed files and the CLI."""

import functools
import http.server
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from msp.data import build_sequences, sources
from msp.data.readers import DataError
from msp.data.sources import download, raw_dir

from data_files import make_tar, run_cli, synthetic_mnist_files, torch_bytes


class Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; /short/NAME announces NAME's full length but sends half of it."""

    def do_GET(self):
        if self.path.startswith("/short/"):
            data = (Path(self.directory) / self.path[len("/short/"):]).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A local HTTP server and the files it serves: good/, truncated/, evil/, odd/, official/."""
    base = tmp_path_factory.mktemp("served")
    idx = synthetic_mnist_files(base / "official")
    members = {f"MNIST/raw/{name}": p.read_bytes() for name, p in idx.items()}
    # Backgrounds as in the authors' archive: torch-saved, one (3, 32, 32) item per image.
    shade = torch.arange(6000, dtype=torch.float32)[:, None, None, None] % 7 / 10
    members["MNIST/train_dat.pt"] = torch_bytes(shade.expand(6000, 3, 32, 32).clone())
    members["MNIST/test_dat.pt"] = torch_bytes(torch.full((1000, 3, 32, 32), 0.25))
    for folder in ("good", "truncated", "evil", "odd"):
        (base / folder).mkdir()
    good = make_tar(base / "good" / "MNIST.tar.gz", members)
    data = good.read_bytes()
    (base / "truncated" / "MNIST.tar.gz").write_bytes(data[: len(data) * 2 // 3])
    make_tar(base / "evil" / "MNIST.tar.gz", {"../escaped.txt": b"x", "MNIST/a": b"y"})
    make_tar(base / "odd" / "MNIST.tar.gz", {"stuff/readme.txt": b"hello"})
    handler = functools.partial(Handler, directory=str(base))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield {"url": f"http://127.0.0.1:{httpd.server_address[1]}", "base": base}
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.delenv(sources.DRIVE_URL_ENV, raising=False)
    monkeypatch.delenv(sources.OFFICIAL_URL_ENV, raising=False)


def files_under(path: Path) -> list[Path]:
    return [p for p in path.rglob("*") if p.is_file()] if path.exists() else []


def test_drive_archive_end_to_end(server, tmp_path, monkeypatch):
    monkeypatch.setenv(sources.DRIVE_URL_ENV, server["url"] + "/good/")
    root = tmp_path / "data"
    assert run_cli("download", "--dataset", "mnist_bg", "--root", str(root), "--source", "drive",
                   "--quiet") == 0
    raw = raw_dir(root, "drive", "mnist_bg")
    manifest = json.loads((raw / "manifest.json").read_text())
    listed = {e["path"] for e in manifest["files"]}
    assert "MNIST/train_dat.pt" in listed and "MNIST/raw/train-images-idx3-ubyte.gz" in listed
    assert all(len(e["sha256"]) == 64 and e["bytes"] > 0 for e in manifest["files"])
    assert manifest["source"] == "drive" and manifest["origin"]["url"].startswith("http://127.0.0.1")
    assert not (raw / "MNIST.tar.gz").exists()  # the downloaded archive is not kept
    assert run_cli("prepare", "--dataset", "mnist_bg", "--root", str(root), "--source", "drive") == 0
    meta = json.loads((root / "prepared/drive/mnist_bg/prepared.json").read_text())
    assert meta["arrays"]["train_images"]["shape"] == [60000, 28, 28]
    assert meta["arrays"]["train_backgrounds"]["dtype"] == "float32"
    gen = build_sequences("mnist_bg", root=root, source="drive", T=3, seed=0)
    xs, info = gen.sample_with_factors(8)
    assert xs.shape == (8, 3, 3, 32, 32)
    # Far from the digit every pixel is the background of the k-th selected image.
    k = info["index"]
    expected = (k % 7).float() / 10
    assert torch.allclose(xs[:, :, :, 0, 0], expected[:, None, None].expand(8, 3, 3))

    # Reuse: a second download verifies the manifest and fetches nothing.
    monkeypatch.setenv(sources.DRIVE_URL_ENV, "http://127.0.0.1:9/")
    assert download("mnist_bg", root, "drive") == raw / "manifest.json"
    target = raw / "MNIST/test_dat.pt"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, different content
    target.write_bytes(bytes(data))
    with pytest.raises(DataError, match="test_dat.pt.*sha256"):
        download("mnist_bg", root, "drive")


@pytest.mark.parametrize("kind,message", [("truncated", "truncated or corrupt"),
                                          ("short", "MNIST.tar.gz"),
                                          ("evil", "outside"),
                                          ("odd", "lacks")])
def test_bad_archives_leave_nothing_behind(server, tmp_path, kind, message):
    url = server["url"] + ("/short/good/" if kind == "short" else f"/{kind}/")
    with pytest.raises(DataError, match=message):
        download("mnist", tmp_path, "drive", base_url=url)
    assert files_under(tmp_path / "raw") == []
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "raw/drive/escaped.txt").exists()


def test_hand_placed_archive_needs_no_network(server, tmp_path):
    raw = raw_dir(tmp_path, "drive", "mnist")
    raw.mkdir(parents=True)
    (raw / "MNIST.tar.gz").write_bytes((server["base"] / "good/MNIST.tar.gz").read_bytes())
    manifest = download("mnist", tmp_path, "drive", base_url="http://127.0.0.1:9/")
    origin = json.loads(manifest.read_text())["origin"]
    assert origin["url"] == "placed by hand" and len(origin["archive_sha256"]) == 64
    assert (raw / "MNIST.tar.gz").exists()  # the user's file stays


def test_official_mnist_checks_published_md5(server, tmp_path, monkeypatch):
    url = server["url"] + "/official/"
    with pytest.raises(DataError, match="MD5 .* differs from the published"):
        download("mnist", tmp_path, "official", base_url=url)
    assert files_under(raw_dir(tmp_path, "official", "mnist")) == []
    # With the MD5 sums of the served files, the same path succeeds end to end.
    served = server["base"] / "official"
    fixed = [(n, u, sources.file_digest(served / n, "md5")) for n, u, _ in
             sources.OFFICIAL_FILES["mnist"]]
    monkeypatch.setitem(sources.OFFICIAL_FILES, "mnist", fixed)
    download("mnist", tmp_path, "official", base_url=url)
    assert run_cli("prepare", "--dataset", "mnist", "--root", str(tmp_path), "--source",
                   "official") == 0
    gen = build_sequences("mnist", root=tmp_path, source="official", split="test", T=4, seed=3)
    assert gen.n_images == 1000 and gen.sample(2).shape == (2, 4, 3, 32, 32)


def test_official_source_has_no_backgrounds(tmp_path, capsys):
    assert run_cli("download", "--dataset", "mnist_bg_full", "--root", str(tmp_path),
                   "--source", "official") == 1
    assert "backgrounds exist only in the authors' archive" in capsys.readouterr().err
    with pytest.raises(DataError, match="msp data download"):
        build_sequences("mnist", root=tmp_path, source="drive")


def test_cli_embedded_end_to_end(tmp_path):
    root = str(tmp_path / "d")
    for action in ("download", "prepare", "verify"):
        assert run_cli(action, "--dataset", "mnist_accl", "--root", root, "--source", "embedded") == 0
    assert (Path(root) / "raw/embedded/mnist/manifest.json").is_file()
    marker = Path(root) / "prepared/embedded/mnist/prepared.json"
    assert json.loads(marker.read_text())["arrays"]["train_images"]["dtype"] == "uint8"
    # The real command line, through the `msp` dispatcher.
    out = subprocess.run([sys.executable, "-m", "msp", "data", "info", "--dataset", "mnist_accl",
                          "--root", root], check=True, capture_output=True, text=True).stdout
    assert json.loads(out)["image_shape"] == [3, 32, 32]
