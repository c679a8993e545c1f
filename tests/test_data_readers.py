"""Readers of the raw formats: IDX, NORB binary matrix, HDF5, on files the tests write,
and the IDX reader on the real Fashion-MNIST files of Debian's dataset-fashion-mnist."""

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from msp.data.readers import (DataError, as_numpy, check_h5_label_order, copy_h5_images,
                              load_torch_object, norb_to_grid, read_idx, read_norb_mat,
                              write_idx, write_norb_mat)

FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.parametrize("compress", [False, True])
def test_idx_round_trip(tmp_path, compress):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (7, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 7, dtype=np.uint8)
    write_idx(tmp_path / "i", images, compress)
    write_idx(tmp_path / "l", labels, compress)
    assert np.array_equal(read_idx(tmp_path / "i"), images)
    assert np.array_equal(read_idx(tmp_path / "l"), labels)
    # Known header bytes: magic 2051 big-endian, then 7, 28, 28.
    raw = (gzip.open if compress else open)(tmp_path / "i", "rb").read()
    assert raw[:16] == bytes([0, 0, 8, 3, 0, 0, 0, 7, 0, 0, 0, 28, 0, 0, 0, 28])


def test_idx_errors_name_the_file(tmp_path):
    write_idx(tmp_path / "good", np.zeros((5, 28, 28), np.uint8))
    data = (tmp_path / "good").read_bytes()
    (tmp_path / "short").write_bytes(data[:-10])
    with pytest.raises(DataError, match="short.*truncated"):
        read_idx(tmp_path / "short")
    (tmp_path / "magic").write_bytes(b"\x00\x00\x09\x99" + data[4:])
    with pytest.raises(DataError, match="magic"):
        read_idx(tmp_path / "magic")
    (tmp_path / "bad.gz").write_bytes(gzip.compress(data)[:40])
    with pytest.raises(DataError, match="bad.gz"):
        read_idx(tmp_path / "bad.gz")


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.float32])
def test_norb_round_trip_and_header(tmp_path, dtype):
    array = (np.arange(2 * 3 * 4 * 5) % 97).astype(dtype).reshape(2, 3, 4, 5)
    write_norb_mat(tmp_path / "m.mat.gz", array, compress=True)
    back = read_norb_mat(tmp_path / "m.mat.gz")
    assert back.dtype == dtype and np.array_equal(back, array)
    vector = np.arange(6, dtype=np.int32)
    write_norb_mat(tmp_path / "v.mat", vector)
    raw = (tmp_path / "v.mat").read_bytes()
    # magic 0x1E3D4C54 (integer matrix) little-endian, ndim 1, dims padded to 3 slots.
    assert raw[:4] == bytes([0x54, 0x4C, 0x3D, 0x1E]) and len(raw) == 20 + 6 * 4
    assert np.array_equal(read_norb_mat(tmp_path / "v.mat"), vector)
    (tmp_path / "t.mat").write_bytes(raw[:-3])
    with pytest.raises(DataError, match="t.mat"):
        read_norb_mat(tmp_path / "t.mat")


def test_norb_to_grid_maps_labels_onto_the_grid():
    grid_shape = (5, 5, 6, 9, 18)
    n = int(np.prod(grid_shape))
    rng = np.random.default_rng(1)
    cat, inst, light, elev, azim = np.unravel_index(rng.permutation(n), grid_shape)
    instances = [4, 6, 7, 8, 9]
    info = np.stack([np.asarray(instances)[inst], elev, 2 * azim, light], 1).astype(np.int32)
    # Tiny 2x2 "images" whose left view encodes the flat grid index, right view is noise.
    flat = np.ravel_multi_index((cat, inst, light, elev, azim), grid_shape)
    dat = np.zeros((n, 2, 2, 2), np.uint8)
    dat[:, 0, 0, 0], dat[:, 0, 0, 1] = flat % 256, flat // 256 % 256
    dat[:, 1] = 255
    grid = norb_to_grid(dat, cat.astype(np.int32), info, instances)
    assert grid.shape == grid_shape + (2, 2)
    decoded = grid[..., 0, 0].astype(int) + 256 * grid[..., 0, 1].astype(int)
    expected = np.arange(n).reshape(grid_shape) % 65536
    assert np.array_equal(decoded, expected) and grid[..., 1, :].max() == 0
    info_bad = info.copy()
    info_bad[0, 0] = 0  # a test instance in a training split
    with pytest.raises(DataError, match="instance"):
        norb_to_grid(dat, cat.astype(np.int32), info_bad, instances)


def test_hdf5_chunked_copy_and_label_order(tmp_path):
    h5py = pytest.importorskip("h5py")
    sizes = (2, 2, 2, 2, 2, 3)
    n = int(np.prod(sizes))
    levels = np.stack(np.unravel_index(np.arange(n), sizes), 1).astype(np.float64) * 0.1
    images = np.random.default_rng(2).integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)
    with h5py.File(tmp_path / "s.h5", "w") as f:
        f["images"], f["labels"] = images, levels
    out = np.lib.format.open_memmap(tmp_path / "out.npy", "w+", np.uint8, images.shape)
    copy_h5_images(tmp_path / "s.h5", out, chunk=7)
    assert np.array_equal(np.asarray(out), images)
    check_h5_label_order(tmp_path / "s.h5", sizes)
    with h5py.File(tmp_path / "bad.h5", "w") as f:
        f["images"], f["labels"] = images, levels[::-1]
    with pytest.raises(DataError, match="order"):
        check_h5_label_order(tmp_path / "bad.h5", sizes)
    with h5py.File(tmp_path / "shape.h5", "w") as f:
        f["images"], f["labels"] = images[:, :32], levels
    with pytest.raises(DataError, match="expected"):
        copy_h5_images(tmp_path / "shape.h5", out)


def test_torch_objects_of_the_archive(tmp_path):
    torch.save(torch.rand(4, 3, 32, 32), tmp_path / "t.pt")
    torch.save(np.zeros((3, 5), np.uint8), tmp_path / "n.pt")  # needs the full unpickler
    torch.save([torch.rand(3, 32, 32) for _ in range(2)], tmp_path / "l.pt")
    assert as_numpy(load_torch_object(tmp_path / "t.pt"), "t").shape == (4, 3, 32, 32)
    assert as_numpy(load_torch_object(tmp_path / "n.pt"), "n").dtype == np.uint8
    assert as_numpy(load_torch_object(tmp_path / "l.pt"), "l", (3, 32, 32)).shape == (2, 3, 32, 32)
    (tmp_path / "cut.pt").write_bytes((tmp_path / "t.pt").read_bytes()[:100])
    with pytest.raises(DataError, match="cut.pt"):
        load_torch_object(tmp_path / "cut.pt")


@pytest.mark.skipif(not FASHION.is_dir(), reason="Debian package dataset-fashion-mnist not "
                    "installed (/usr/share/datasets/fashion-mnist absent); .ci/run installs it")
def test_idx_reader_on_real_fashion_mnist():
    # The package installs the four original gzip-compressed IDX files.
    names = sorted(p.name for p in FASHION.iterdir())
    assert names == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
                     "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]
    images = read_idx(FASHION / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(FASHION / "t10k-labels-idx1-ubyte.gz")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and np.array_equal(np.bincount(labels), [1000] * 10)
    assert read_idx(FASHION / "train-labels-idx1-ubyte.gz").shape == (60000,)
    # Known facts of Fashion-MNIST: the first test item is an ankle boot (9), then a
    # pullover (2); images are dark-background with bright objects.
    assert labels[:2].tolist() == [9, 2]
    assert images[:, 0, 0].mean() < 5 and images.max() == 255
