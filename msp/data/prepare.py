"""Prepared arrays: every dataset converted once into .npy files that training
memory-maps (never unpickled in training).

ROOT/prepared/SOURCE/FAMILY/ holds
- mnist:     {train,test}_images (N, 28, 28) uint8, {train,test}_labels (N,) uint8
- mnist_bg:  the same plus {train,test}_backgrounds (K, 3, 32, 32) (uint8, or float32 in
             [0, 1] as in the authors' archive)
- 3dshapes:  images (480000, 64, 64, 3) uint8 in the flat factor order; the embedded
             source stores the scene layers instead (see embedded.py), table
             "composed_shapes"
- smallNORB: {train,test}_images (categories, instances, 6, 9, 18, 96, 96) uint8
and, written last, prepared.json (arrays with shape/dtype/bytes/sha256, factor names and
sizes, source). Each array is written to a temporary name and renamed. Arrays from real
sources are checked by content before they are written (dtype, value range, no constant
image); `msp data verify` and training check every array's sha256 against prepared.json.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import numpy as np

from msp import io
from msp.data import embedded
from msp.data.readers import (SHAPES3D_COUNT, DataError, as_numpy, check_h5_label_order,
                              copy_h5_images, load_torch_object, norb_to_grid, read_idx,
                              read_norb_mat)
from msp.data.sources import (NO_OFFICIAL_BG, NORB_FILES, check_source, locate, raw_dir,
                              verify_manifest)

FORMAT_VERSION = 2  # 2: sha256 of every array recorded
SHAPES_FACTORS = embedded.SHAPES_FACTORS
SHAPES_SIZES = embedded.SHAPES_SIZES
NORB_FACTORS = embedded.NORB_FACTORS
MNIST_COUNTS = {"train": 60000, "test": 10000}


def prepared_dir(root, source: str, family: str) -> Path:
    return Path(root) / "prepared" / source / family


def save_array(directory: Path, name: str, array: np.ndarray) -> None:
    io.save_array(directory / f"{name}.npy", array)


# ----------------------------------------------------------------------------- per family
def mnist_from_raw(raw: Path) -> dict[str, np.ndarray]:
    arrays = {}
    for split, stem in (("train", "train"), ("test", "t10k")):
        paths = {kind: locate(raw, f"{stem}-{kind}-ubyte", gz_ok=True)
                 for kind in ("images-idx3", "labels-idx1")}
        for kind, path in paths.items():
            if path is None:
                raise DataError(f"{raw}: no {stem}-{kind}-ubyte[.gz]; run `msp data download`")
        images, labels = read_idx(paths["images-idx3"]), read_idx(paths["labels-idx1"])
        if images.shape != (MNIST_COUNTS[split], 28, 28) or labels.shape != (MNIST_COUNTS[split],):
            raise DataError(f"{paths['images-idx3']}: images {images.shape}, labels "
                            f"{labels.shape}; expected ({MNIST_COUNTS[split]}, 28, 28)")
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels
    return arrays


def backgrounds_from_raw(raw: Path) -> dict[str, np.ndarray]:
    arrays = {}
    for split in ("train", "test"):
        path = locate(raw, f"MNIST/{split}_dat.pt")
        if path is None:
            raise DataError(f"{raw}: no MNIST/{split}_dat.pt (the MNIST-bg backgrounds of "
                            "the authors' archive); run `msp data download --source drive`")
        bg = as_numpy(load_torch_object(path), path, (3, 32, 32))
        if bg.ndim == 4 and bg.shape[1:] == (32, 32, 3):
            bg = bg.transpose(0, 3, 1, 2)
        if bg.ndim != 4 or bg.shape[1:] != (3, 32, 32):
            raise DataError(f"{path}: backgrounds of shape {bg.shape}, expected (N, 3, 32, 32)")
        if np.issubdtype(bg.dtype, np.floating):
            bg = bg.astype(np.float32)  # the authors' float backgrounds; range checked later
        arrays[f"{split}_backgrounds"] = bg
    return arrays


def shapes_from_drive(raw: Path, out_dir: Path) -> dict:
    path = locate(raw, "3dshapes/images.pt")
    if path is None:
        raise DataError(f"{raw}: no 3dshapes/images.pt; run `msp data download --source drive`")
    images = as_numpy(load_torch_object(path), path)  # one-off 5.9 GB unpickle (prepare only)
    if images.shape != (SHAPES3D_COUNT, 64, 64, 3) or images.dtype != np.uint8:
        raise DataError(f"{path}: array {images.shape} {images.dtype}, expected "
                        f"({SHAPES3D_COUNT}, 64, 64, 3) uint8")
    save_array(out_dir, "images", images)
    return {"images": images}


def shapes_from_h5(raw: Path, out_dir: Path) -> dict:
    path = raw / "3dshapes.h5"
    if not path.is_file():
        raise DataError(f"{path} missing; run `msp data download --source official`")
    check_h5_label_order(path, tuple(SHAPES_SIZES))
    with io.atomic_path(out_dir / "images.npy") as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8,
                                        shape=(SHAPES3D_COUNT, 64, 64, 3))
        copy_h5_images(path, out)
        out.flush()
        del out
    return {"images": np.load(out_dir / "images.npy", mmap_mode="r")}


def to_uint8(array: np.ndarray, path: Path) -> np.ndarray:
    """Pixel values stored in another numeric type -> uint8, refusing what does not fit."""
    if array.dtype == np.uint8:
        return array
    if not np.issubdtype(array.dtype, np.number) or not np.isfinite(array).all() \
            or array.min() < 0 or array.max() > 255:
        raise DataError(f"{path}: pixel values of dtype {array.dtype} outside 0..255 (or not "
                        "finite); the file is corrupt: delete the raw folder and download again")
    return array.astype(np.uint8)


def norb_from_drive(raw: Path) -> dict[str, np.ndarray]:
    arrays = {}
    for split in ("train", "test"):
        path = locate(raw, f"smallNORB/{split}.pt")
        if path is None:
            raise DataError(f"{raw}: no smallNORB/{split}.pt; run `msp data download --source drive`")
        grid = as_numpy(load_torch_object(path), path)
        if grid.shape != (5, 5, 6, 9, 18, 96, 96):
            raise DataError(f"{path}: array {grid.shape}, expected (5, 5, 6, 9, 18, 96, 96)")
        arrays[f"{split}_images"] = to_uint8(grid, path)
    return arrays


def norb_from_mat(raw: Path) -> dict[str, np.ndarray]:
    arrays = {}
    for split, tag, instances in (("train", "training", [4, 6, 7, 8, 9]),
                                  ("test", "testing", [0, 1, 2, 3, 5])):
        files = {kind: raw / name for name in NORB_FILES for kind in ("dat", "cat", "info")
                 if f"-{tag}-{kind}." in name}
        for f in files.values():
            if not f.is_file():
                raise DataError(f"{f} missing; run `msp data download --source official`")
        dat = read_norb_mat(files["dat"])
        if dat.shape[1:] != (2, 96, 96) or dat.dtype != np.uint8:
            raise DataError(f"{files['dat']}: {dat.shape} {dat.dtype}, expected (24300, 2, 96, 96) "
                            "uint8; download it again")
        arrays[f"{split}_images"] = norb_to_grid(
            dat, read_norb_mat(files["cat"]), read_norb_mat(files["info"]), instances,
            source=str(files["dat"]))
    return arrays


# ----------------------------------------------------------------------------- content
def check_content(name: str, array: np.ndarray, where, chunk: int = 10000) -> None:
    """Refuse values a real source never holds: images uint8 (or float in [0, 1] for the
    backgrounds) and no digit/scene image that is one constant value (zeroed data);
    labels uint8 digits. Reads in chunks, so a memory-mapped 5.9 GB array is fine."""
    kind = "labels" if name.endswith("labels") else "images"
    if array.dtype == np.uint8:
        pass
    elif name.endswith("backgrounds") and np.issubdtype(array.dtype, np.floating):
        finite, low, high = bool(np.isfinite(array).all()), float(array.min()), float(array.max())
        if not finite or low < 0 or high > 1:
            raise DataError(f"{where}: {name} values in [{low:.4g}, {high:.4g}]"
                            f"{'' if finite else ' with NaN/inf'}; float backgrounds must lie "
                            "in [0, 1]. The file is corrupt: delete the raw folder and "
                            "download again")
    else:
        raise DataError(f"{where}: {name} has dtype {array.dtype}; expected uint8"
                        f"{' (or float in [0, 1])' if name.endswith('backgrounds') else ''}. "
                        "The file is corrupt or not the one expected: download again")
    if kind == "labels":
        if array.size and int(array.max()) > 9:
            raise DataError(f"{where}: {name} holds {int(array.max())}; MNIST labels are 0..9")
        return
    if name.endswith("backgrounds"):
        return  # a plain-colour background is legitimate
    flat = array.reshape(-1, int(np.prod(array.shape[-2:])) * (3 if array.shape[-1] == 3 else 1)) \
        if array.ndim >= 3 else array.reshape(1, -1)
    for start in range(0, len(flat), chunk):
        block = np.asarray(flat[start:start + chunk])
        constant = np.flatnonzero(block.max(axis=1) == block.min(axis=1))
        if len(constant):
            raise DataError(f"{where}: {name} image {start + int(constant[0])} (and "
                            f"{len(constant) - 1} more in this block) is one constant value; the "
                            "data are zeroed or overwritten: delete the raw folder and download again")


def array_digest(path: Path) -> str:
    from msp.data.sources import file_digest

    return file_digest(path)


def verify_prepared(family: str, root, source: str) -> dict:
    """Every prepared array's sha256 against prepared.json -> meta. Catches arrays changed
    in place (same shape and dtype), which shape checks cannot see."""
    meta, _ = load_prepared(family, root, source)
    out_dir = prepared_dir(root, source, family)
    for name, spec in meta["arrays"].items():
        path = out_dir / f"{name}.npy"
        if array_digest(path) != spec["sha256"]:
            raise DataError(f"{path}: sha256 differs from {out_dir / 'prepared.json'}: the array "
                            "was changed after it was prepared; run `msp data prepare --force` "
                            "with the same --dataset/--root/--source")
    return meta


# ----------------------------------------------------------------------------- driver
def factor_info(family: str, arrays: dict) -> dict:
    if family == "3dshapes":
        return {"factor_names": SHAPES_FACTORS, "factor_sizes": SHAPES_SIZES}
    if family == "smallNORB":
        return {"factor_names": NORB_FACTORS,
                "factor_sizes": list(arrays["train_images"].shape[:5])}
    return {"factor_names": ["rotation", "hue", "translation"], "factor_sizes": []}


def prepare(family: str, root, source: str, force: bool = False) -> Path:
    """Convert the raw files of one family into prepared arrays; returns prepared.json."""
    check_source(family, source)
    out_dir = prepared_dir(root, source, family)
    marker = out_dir / "prepared.json"
    if marker.is_file() and not force:
        return marker
    out_dir.mkdir(parents=True, exist_ok=True)
    table = "array"
    if source == "embedded":
        if family in ("mnist", "mnist_bg"):
            arrays = embedded.mnist_arrays(with_backgrounds=family == "mnist_bg")
        elif family == "3dshapes":
            arrays, table = embedded.shapes_layers(), "composed_shapes"
        else:
            arrays = {f"{s}_images": embedded.norb_grid(s) for s in ("train", "test")}
        raw_manifest = None
    else:
        raw = raw_dir(root, source, family)
        raw_manifest = verify_manifest(raw, deep=True)  # content, not only sizes
        if family == "mnist_bg" and source == "official":
            raise DataError(NO_OFFICIAL_BG)
        if family == "mnist":
            arrays = mnist_from_raw(raw)
        elif family == "mnist_bg":
            arrays = {**mnist_from_raw(raw), **backgrounds_from_raw(raw)}
        elif family == "3dshapes":
            arrays = (shapes_from_drive if source == "drive" else shapes_from_h5)(raw, out_dir)
        else:
            arrays = norb_from_drive(raw) if source == "drive" else norb_from_mat(raw)
    if source != "embedded":  # the embedded arrays are generated here, not read
        for name, array in arrays.items():
            check_content(name, array, raw_dir(root, source, family))
    written = {"images"} if family == "3dshapes" and source != "embedded" else set()
    for name, array in arrays.items():
        if name not in written:
            save_array(out_dir, name, array)
    meta = {"family": family, "source": source, "format": FORMAT_VERSION, "table": table,
            "arrays": {name: {"shape": list(a.shape), "dtype": str(a.dtype), "bytes": int(a.nbytes),
                              "sha256": array_digest(out_dir / f"{name}.npy")}
                       for name, a in arrays.items()},
            **factor_info(family, arrays),
            "raw_manifest_created": None if raw_manifest is None else raw_manifest.get("created"),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    io.write_json(marker, meta, sort_keys=True)
    return marker


def load_prepared(family: str, root, source: str) -> tuple[dict, dict[str, np.ndarray]]:
    """(meta, arrays memory-mapped read-only); the embedded source is prepared on the fly."""
    check_source(family, source)
    out_dir = prepared_dir(root, source, family)
    marker = out_dir / "prepared.json"
    if not marker.is_file():
        if source != "embedded":
            raise DataError(f"{marker} missing: run `msp data download --dataset {family} "
                            f"--root {root} --source {source}` then `msp data prepare` with "
                            "the same arguments")
        prepare(family, root, source)
    try:
        meta = json.loads(marker.read_text())
    except ValueError as error:
        raise DataError(f"{marker}: unreadable ({error}); run `msp data prepare --force`") from None
    if meta.get("format") != FORMAT_VERSION:
        raise DataError(f"{marker}: written by an older msp-pipeline (format {meta.get('format')}, "
                        f"now {FORMAT_VERSION}: checksums of the arrays); run `msp data prepare "
                        f"--force --dataset {family} --root {root} --source {source}`")
    arrays = {}
    for name, spec in meta["arrays"].items():
        path = out_dir / f"{name}.npy"
        try:
            array = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as error:
            raise DataError(f"{path}: unreadable ({error}); run `msp data prepare --force`") from None
        if list(array.shape) != spec["shape"] or str(array.dtype) != spec["dtype"]:
            raise DataError(f"{path}: {array.shape} {array.dtype} differs from {marker}; "
                            "run `msp data prepare --force`")
        arrays[name] = array
    return meta, arrays
