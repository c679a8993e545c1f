"""Raw data files made on the fly for the data tests: synthetic MNIST IDX files, tarballs,
torch-pickled bytes, and the `msp data` CLI called in-process."""

import argparse
import io
import tarfile
from pathlib import Path

import numpy as np
import torch

from msp.data.cli import add_arguments, main
from msp.data.readers import write_idx


def synthetic_mnist_files(folder: Path) -> dict[str, Path]:
    """Full-size MNIST-format IDX .gz files (60000 / 10000 items), a bright square whose
    position depends on the label; labels cycle 0..9."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for stem, n in (("train", 60000), ("t10k", 10000)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        images = np.zeros((n, 28, 28), np.uint8)
        for digit in range(10):
            images[labels == digit, 8 + digit: 14 + digit, 6:20] = 200
        files[f"{stem}-images-idx3-ubyte.gz"] = folder / f"{stem}-images-idx3-ubyte.gz"
        files[f"{stem}-labels-idx1-ubyte.gz"] = folder / f"{stem}-labels-idx1-ubyte.gz"
        write_idx(files[f"{stem}-images-idx3-ubyte.gz"], images, compress=True)
        write_idx(files[f"{stem}-labels-idx1-ubyte.gz"], labels, compress=True)
    return files


def make_tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def torch_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def run_cli(*argv) -> int:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return main(parser.parse_args(list(argv)))


class Exploit:
    """Unpickling this runs code: it writes a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "code ran"))
