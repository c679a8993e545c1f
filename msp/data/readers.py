"""Readers for the raw file formats of the paper's datasets (docs/datasets.md, 'Sources').

- IDX (MNIST, Fashion-MNIST): big-endian; magic 2051 (images) / 2049 (labels), then the
  sizes as int32; optionally gzip-compressed.
- NORB binary matrix (small NORB `.mat`): little-endian int32 magic giving the element
  type, int32 ndim, then max(3, ndim) int32 sizes (unused ones are 1).
- HDF5 (DeepMind `3dshapes.h5`): copied in chunks, never loaded whole (5.9 GB).
- torch-saved objects of the authors' archive (`*.pt`), read only at prepare time.
Every reader checks what it reads and raises DataError naming the file and the fix.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np


class DataError(RuntimeError):
    """A dataset file is missing, truncated or not what it should be."""


def _open_maybe_gzip(path: Path):
    with open(path, "rb") as probe:
        gzipped = probe.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gzipped else open(path, "rb")


def _read_all(path: Path) -> bytes:
    try:
        with _open_maybe_gzip(path) as stream:
            return stream.read()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (EOFError, OSError, gzip.BadGzipFile) as error:
        raise DataError(f"{path}: unreadable or truncated gzip stream ({error}); "
                        "delete it and download it again") from None


# ---------------------------------------------------------------------------- IDX
IDX_MAGIC = {2049: 1, 2051: 3}  # labels: 1 dim, images: 3 dims


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """IDX file (plain or .gz) -> uint8 array: images (N, rows, cols) or labels (N,)."""
    path = Path(path)
    raw = _read_all(path)
    if len(raw) < 8:
        raise DataError(f"{path}: {len(raw)} bytes is too short for an IDX header")
    magic = int.from_bytes(raw[0:4], "big")
    if magic not in IDX_MAGIC:
        raise DataError(f"{path}: IDX magic {magic} is neither 2049 (labels) nor 2051 "
                        "(images); is this an MNIST IDX file?")
    ndim = IDX_MAGIC[magic]
    header = 4 + 4 * ndim
    shape = tuple(int(s) for s in np.frombuffer(raw, ">i4", count=ndim, offset=4))
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise DataError(f"{path}: header announces shape {shape} ({expected} bytes) but "
                        f"{len(raw) - header} bytes follow; the file is truncated or "
                        "corrupt, download it again")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def write_idx(path: str | os.PathLike, array: np.ndarray, compress: bool = False) -> None:
    """Write a uint8 array (N,) or (N, rows, cols) as IDX; the inverse of read_idx."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    magic = {1: 2049, 3: 2051}[array.ndim]
    payload = (magic.to_bytes(4, "big") + np.asarray(array.shape, ">i4").tobytes()
               + array.tobytes())
    opener = gzip.open if compress else open
    with opener(path, "wb") as stream:
        stream.write(payload)


# ---------------------------------------------------------------------------- NORB
NORB_TYPES = {0x1E3D4C55: np.uint8, 0x1E3D4C54: np.int32, 0x1E3D4C56: np.int16,
              0x1E3D4C51: np.float32, 0x1E3D4C53: np.float64}


def read_norb_mat(path: str | os.PathLike) -> np.ndarray:
    """NORB binary matrix (plain or .gz) -> array of its declared type and shape."""
    path = Path(path)
    raw = _read_all(path)
    if len(raw) < 20:
        raise DataError(f"{path}: {len(raw)} bytes is too short for a NORB header")
    magic, ndim = (int(v) for v in np.frombuffer(raw, "<i4", count=2))
    magic &= 0xFFFFFFFF
    if magic not in NORB_TYPES:
        raise DataError(f"{path}: NORB magic {magic:#x} unknown; is this a small NORB "
                        "'.mat' file?")
    if not 1 <= ndim <= 8:
        raise DataError(f"{path}: NORB header declares {ndim} dimensions")
    n_slots = max(3, ndim)
    shape = tuple(int(s) for s in np.frombuffer(raw, "<i4", count=n_slots, offset=8))[:ndim]
    header = 8 + 4 * n_slots
    dtype = np.dtype(NORB_TYPES[magic]).newbyteorder("<")
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(f"{path}: header announces shape {shape} ({expected} bytes) but "
                        f"{len(raw) - header} bytes follow; truncated or corrupt, "
                        "download it again")
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def write_norb_mat(path: str | os.PathLike, array: np.ndarray, compress: bool = False) -> None:
    """Write an array in the NORB binary matrix format; the inverse of read_norb_mat."""
    magic = {np.dtype(t): m for m, t in NORB_TYPES.items()}[np.dtype(array.dtype)]
    dims = list(array.shape) + [1] * max(0, 3 - array.ndim)
    header = np.asarray([magic - (1 << 32) if magic >= 1 << 31 else magic, array.ndim] + dims,
                        "<i4").tobytes()
    payload = header + np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()
    opener = gzip.open if compress else open
    with opener(path, "wb") as stream:
        stream.write(payload)


NORB_GRID = (5, 5, 6, 9, 18)  # category, instance, lighting, elevation, azimuth


def norb_to_grid(dat: np.ndarray, cat: np.ndarray, info: np.ndarray,
                 instances: list[int], source: str = "small NORB") -> np.ndarray:
    """Small NORB split -> the authors' grid.

    dat: (24300, 2, 96, 96) uint8 stereo pairs; cat: (24300,); info: (24300, 4) =
    instance, elevation 0..8, azimuth 0,2,..,34, lighting 0..5 -> (5, 5, 6, 9, 18, 96, 96)
    uint8 with the split's instances mapped to 0..4 in increasing order; the first
    image of each stereo pair fills the grid.
    """
    n = int(np.prod(NORB_GRID))
    if dat.ndim != 4 or dat.shape[:2] != (n, 2) or cat.shape != (n,) or info.shape != (n, 4):
        raise DataError(f"{source}: shapes dat {dat.shape}, cat {cat.shape}, info "
                        f"{info.shape}; expected ({n}, 2, 96, 96), ({n},), ({n}, 4)")
    instance_slot = {inst: k for k, inst in enumerate(sorted(instances))}
    try:
        inst = np.vectorize(instance_slot.__getitem__, otypes=[np.int64])(info[:, 0])
    except KeyError as error:
        raise DataError(f"{source}: instance {error} is not one of this split's "
                        f"instances {sorted(instances)}") from None
    elevation, azimuth, lighting = info[:, 1], info[:, 2], info[:, 3]
    if azimuth.min() < 0 or azimuth.max() > 34 or np.any(azimuth % 2) or elevation.max() > 8 \
            or lighting.max() > 5 or cat.min() < 0 or cat.max() > 4:
        raise DataError(f"{source}: factor values out of the small NORB ranges")
    flat = np.ravel_multi_index((cat, inst, lighting, elevation, azimuth // 2), NORB_GRID)
    if len(np.unique(flat)) != n:
        raise DataError(f"{source}: the (category, instance, lighting, elevation, azimuth) "
                        "labels do not cover the grid exactly once")
    grid = np.empty((n,) + dat.shape[2:], np.uint8)
    grid[flat] = dat[:, 0]
    return grid.reshape(NORB_GRID + dat.shape[2:])


# ---------------------------------------------------------------------------- HDF5
SHAPES3D_COUNT = 480000


def copy_h5_images(path: str | os.PathLike, out: np.ndarray, chunk: int = 10000) -> None:
    """Copy `images` (480000, 64, 64, 3) uint8 of 3dshapes.h5 into `out` chunk by chunk.

    `out` is typically an np.lib.format.open_memmap, so memory stays ~chunk images.
    """
    import h5py

    path = Path(path)
    try:
        handle = h5py.File(path, "r")
    except (OSError, FileNotFoundError) as error:
        raise DataError(f"{path}: not a readable HDF5 file ({error}); download "
                        "3dshapes.h5 again") from None
    with handle:
        if "images" not in handle or "labels" not in handle:
            raise DataError(f"{path}: needs datasets 'images' and 'labels', has "
                            f"{sorted(handle.keys())}")
        images, labels = handle["images"], handle["labels"]
        if images.shape[1:] != (64, 64, 3) or images.dtype != np.uint8 \
                or labels.shape != (images.shape[0], 6) or out.shape != images.shape:
            raise DataError(f"{path}: images {images.shape} {images.dtype}, labels "
                            f"{labels.shape}; expected (N, 64, 64, 3) uint8 and (N, 6) "
                            f"with N = {out.shape[0]}")
        for start in range(0, images.shape[0], chunk):
            stop = min(start + chunk, images.shape[0])
            out[start:stop] = images[start:stop]


def check_h5_label_order(path: str | os.PathLike, sizes: tuple[int, ...]) -> None:
    """The `labels` of 3dshapes.h5 must enumerate the grid in mixed-radix order
    (orientation fastest); labels are small (N x 6 floats), so read them whole."""
    import h5py

    with h5py.File(path, "r") as handle:
        labels = np.asarray(handle["labels"])
    levels = []
    for f, size in enumerate(sizes):
        values = np.unique(labels[:, f])
        if len(values) != size:
            raise DataError(f"{path}: labels column {f} has {len(values)} distinct values, "
                            f"expected {size}")
        levels.append(np.searchsorted(values, labels[:, f]))
    if not np.array_equal(np.ravel_multi_index(levels, sizes), np.arange(len(labels))):
        raise DataError(f"{path}: images are not in the flat index order (floor, wall, "
                        "object, scale, shape, orientation with orientation fastest)")


# ---------------------------------------------------------------------------- torch .pt
def numpy_safe_globals() -> list:
    """What torch's weights-only unpickler must additionally accept to rebuild numpy
    arrays (the authors' archive holds some): array reconstruction and plain dtypes."""
    multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    dtypes = {type(np.dtype(t)) for t in (np.bool_, np.uint8, np.int8, np.uint16, np.int16,
                                          np.uint32, np.int32, np.uint64, np.int64,
                                          np.float16, np.float32, np.float64)}
    return [multiarray._reconstruct, np.ndarray, np.dtype, *dtypes]


def load_torch_object(path: str | os.PathLike):
    """Load one file of the authors' archive as data: tensors, numpy arrays and containers
    of them. Never the full unpickler: a file that needs it (it names code to run) is
    refused, whatever its checksum, since a checksum only says the file is what was
    downloaded, not that it is harmless."""
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        with torch.serialization.safe_globals(numpy_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        names = str(error).split("Unsupported global:", 1)[-1].split(".", 1)[0] \
            if "Unsupported global" in str(error) else type(error).__name__
        raise DataError(f"{path}: refused to load: the file is not plain data (tensors, numpy "
                        f"arrays, lists, dicts) but asks to run code ({names.strip()}). Such a "
                        "file can execute anything when unpickled; do not use it. Download the "
                        "archive again from the authors' folder, and report it if it persists") from None
    except (RuntimeError, EOFError, ValueError) as error:
        raise DataError(f"{path}: unreadable torch file ({error}); the archive was "
                        "truncated or corrupt, delete the raw folder and download again") from None


def as_numpy(obj, path: Path | str, item_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """A tensor, array or sequence of items (as the authors' .pt files hold) -> ndarray."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().numpy()
    if isinstance(obj, np.ndarray):
        return obj
    if hasattr(obj, "__len__") and hasattr(obj, "__getitem__"):
        items = [np.asarray(obj[i].numpy() if isinstance(obj[i], torch.Tensor) else obj[i])
                 for i in range(len(obj))]
        if items and item_shape is not None and items[0].shape != item_shape:
            raise DataError(f"{path}: items have shape {items[0].shape}, expected {item_shape}")
        return np.stack(items) if items else np.zeros((0,) + (item_shape or ()))
    raise DataError(f"{path}: holds a {type(obj).__name__}, expected an array or tensor")
