"""Downloading the raw files: the authors' Google Drive archive ("drive"), the official
sources ("official"), or nothing at all ("embedded") (docs/datasets.md, 'Sources').

Layout: ROOT/raw/SOURCE/FAMILY/ holds the raw files and, written last, manifest.json
(files, sizes, sha256, source, origin, date). A later download verifies against the
manifest instead of fetching again. Downloads go to a temporary name in the same folder,
are verified, then renamed; a failure leaves nothing half-written behind.

Without network, place the files by hand in ROOT/raw/SOURCE/FAMILY/ (the archive for
"drive", e.g. MNIST.tar.gz; the original file names for "official") and run
`msp data download` again: it verifies and uses them instead of fetching.
"""

from __future__ import annotations

import datetime
import gzip
import hashlib
import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from msp import io, registry
from msp.data.readers import DataError
from msp.data.transfer import CONNECT_TIMEOUT, DEADLINE, READ_TIMEOUT, fetch

SOURCES = ("drive", "official", "embedded")
FAMILIES = tuple(registry.families(prepared_only=True))  # the built-in datasets' folders (msp.registry)

DRIVE_FOLDER_ID = "1_uXjx06U48to9OSyGY1ezqipAbbuT0vq"
DRIVE_URL_ENV = "MSP_DRIVE_URL"  # base URL serving the archives by name (tests, mirrors)
OFFICIAL_URL_ENV = "MSP_OFFICIAL_URL"  # base URL serving the official files by name
DRIVE_ARCHIVE = {"mnist": "MNIST.tar.gz", "mnist_bg": "MNIST.tar.gz",
                 "3dshapes": "3dshapes.tar.gz", "smallNORB": "smallNORB.tar.gz"}
# Files each archive must hold, as path suffixes (inferred from the authors' loaders and
# README: `tar xzf X.tar.gz -C ROOT`, then ROOT/MNIST/raw, ROOT/3dshapes/images.pt, ...).
MNIST_IDX = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
DRIVE_LAYOUT = {
    "mnist": [f"MNIST/raw/{name}" for name in MNIST_IDX],
    "mnist_bg": [f"MNIST/raw/{name}" for name in MNIST_IDX]
    + ["MNIST/train_dat.pt", "MNIST/test_dat.pt"],
    "3dshapes": ["3dshapes/images.pt"],
    "smallNORB": ["smallNORB/train.pt", "smallNORB/test.pt"],
}

NORB_URL = "https://cs.nyu.edu/~ylclab/data/norb-v1.0-small/"
NORB_FILES = [f"smallnorb-5x{ids}x9x18x6x2x96x96-{split}-{kind}.mat.gz"
              for ids, split in (("46789", "training"), ("01235", "testing"))
              for kind in ("dat", "cat", "info")]
# (file name, URL, published MD5 or None). MNIST MD5 sums as torchvision lists them.
OFFICIAL_FILES = {
    "mnist": [(f"{name}.gz", f"https://ossci-datasets.s3.amazonaws.com/mnist/{name}.gz", md5)
              for name, md5 in zip(MNIST_IDX, ("f68b3c2dcbeaaa9fbdd348bbdeb94873",
                                               "d53e105ee54ea40749a09fcbcd1e9432",
                                               "9fb629c4189551a2d022fa330f9573f3",
                                               "ec29112dd5afa0611ce80d1b7f02629c"))],
    "3dshapes": [("3dshapes.h5", "https://storage.googleapis.com/3d-shapes/3dshapes.h5", None)],
    "smallNORB": [(name, NORB_URL + name, None) for name in NORB_FILES],
}
NO_OFFICIAL_BG = ("the MNIST-bg backgrounds exist only in the authors' archive: use "
                  "--source drive (the paper's data) or --source embedded (procedural "
                  "backgrounds, offline)")


def raw_dir(root, source: str, family: str) -> Path:
    return Path(root) / "raw" / source / family


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_source(family: str, source: str) -> None:
    if source not in SOURCES:
        raise DataError(f"source {source!r}: use one of {SOURCES}")
    if family not in FAMILIES:
        raise DataError(f"dataset family {family!r}: use one of {FAMILIES}")
    if family == "mnist_bg" and source == "official":
        raise DataError(f"mnist_bg from --source official: {NO_OFFICIAL_BG}")


# ----------------------------------------------------------------------------- manifest
def write_manifest(directory: Path, family: str, source: str, files: list[Path],
                   origin: dict) -> Path:
    entries = [{"path": str(f.relative_to(directory)), "bytes": f.stat().st_size,
                "sha256": file_digest(f)} for f in sorted(files)]
    manifest = {"family": family, "source": source, "files": entries, "origin": origin,
                "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    path = directory / "manifest.json"
    io.write_json(path, manifest, sort_keys=True)
    return path


def verify_manifest(directory: Path, deep: bool = True) -> dict:
    """Check every file of manifest.json (size; sha256 when deep) -> the manifest."""
    path = Path(directory) / "manifest.json"
    if not path.is_file():
        raise DataError(f"{path}: no manifest; run `msp data download` first")
    try:
        manifest = json.loads(path.read_text())
        entries = {entry["path"]: entry for entry in manifest["files"]}
    except (ValueError, KeyError, TypeError) as error:
        raise DataError(f"{path}: unreadable manifest ({error}); delete {directory} and "
                        "download again") from None
    missing = [name for name in expected_files(manifest.get("family"), manifest.get("source"))
               if not any(p == name or p.endswith("/" + name) or p == name + ".gz"
                          or p.endswith("/" + name + ".gz") for p in entries)]
    if missing:
        raise DataError(f"{path} does not list {missing}: the download was incomplete; "
                        f"delete {directory} and download again")
    for entry in manifest["files"]:
        f = Path(directory) / entry["path"]
        if not f.is_file():
            raise DataError(f"{f}: listed in {path} but missing; delete {directory} and "
                            "download again")
        if f.stat().st_size != entry["bytes"] or (deep and file_digest(f) != entry["sha256"]):
            raise DataError(f"{f}: size or sha256 differs from {path}; the file changed or is "
                            f"corrupt; delete {directory} and download again")
    return manifest


def expected_files(family: str | None, source: str | None) -> list[str]:
    """Path suffixes a complete raw folder of (family, source) must hold."""
    if source == "drive" and family in DRIVE_LAYOUT:
        return DRIVE_LAYOUT[family]
    if source == "official" and family in OFFICIAL_FILES:
        return [name for name, _, _ in OFFICIAL_FILES[family]]
    return []


def is_hidden(path: Path, directory: Path) -> bool:
    """A temporary of ours (dot-named file or folder) anywhere below directory."""
    return any(part.startswith(".") for part in path.relative_to(directory).parts)


def remove_leftovers(directory: Path) -> None:
    """Delete what a killed download or unpack left (.NAME.*.part, .unpack-*)."""
    for entry in directory.glob(".*"):
        if entry.name.startswith(".unpack-") or entry.name.endswith(".part"):
            shutil.rmtree(entry, ignore_errors=True)


HTML_HINT = ("Google Drive sends such a page when the file's download quota is exceeded "
             "(wait up to 24 h) or to confirm a virus scan of a large file")


def check_not_html(path: Path, expected: str) -> None:
    """Refuse an HTML page saved in place of an archive, saying what it is."""
    with open(path, "rb") as stream:
        head = stream.read(4096)
    if head[:2] == b"\x1f\x8b":  # gzip: looks like the archive
        return
    text = head.decode("utf-8", "replace").lower()
    if "<html" in text or "<!doctype html" in text:
        title = ""
        if "<title>" in text:
            title = text.split("<title>", 1)[1].split("</title>", 1)[0].strip()
        raise DataError(f"{path}: received an HTML page{f' ({title!r})' if title else ''} "
                        f"instead of the archive {expected}. {HTML_HINT}. Download it in a "
                        f"browser from https://drive.google.com/drive/folders/{DRIVE_FOLDER_ID} "
                        f"and place {expected} in {path.parent}/, then run the same command")


def drive_file_ids(quiet: bool = True) -> dict[str, str]:
    """Names -> Google Drive ids of the files in the authors' public folder (gdown listing)."""
    import gdown

    try:
        entries = gdown.download_folder(id=DRIVE_FOLDER_ID, skip_download=True, quiet=quiet)
    except Exception as error:
        raise DataError(f"listing the authors' Google Drive folder {DRIVE_FOLDER_ID} failed: "
                        f"{error}. Download the archives by hand from "
                        f"https://drive.google.com/drive/folders/{DRIVE_FOLDER_ID} and place "
                        "them in ROOT/raw/drive/FAMILY/, or set "
                        f"{DRIVE_URL_ENV} to a mirror") from None
    return {Path(e.path).name: e.id for e in entries or []}


def safe_extract(archive: Path, dest: Path) -> None:
    """Unpack a .tar.gz into dest; rejects absolute paths, '..' and links leaving dest.
    Reading the whole stream also detects truncated or corrupt archives."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()  # reads the whole stream: truncation fails here
            for m in members:
                target = (dest / m.name).resolve()
                if m.name.startswith("/") or not target.is_relative_to(dest.resolve()):
                    raise DataError(f"{archive}: member {m.name!r} points outside the "
                                    "target folder; refusing to unpack this archive")
            tar.extractall(dest, members=members, filter="data")
    except DataError:
        raise
    except (tarfile.TarError, EOFError, OSError, gzip.BadGzipFile) as error:
        raise DataError(f"{archive}: truncated or corrupt archive ({error}); delete it and "
                        "download it again (or place an intact copy there by hand)") from None


def locate(directory: Path, suffix: str, gz_ok: bool = False) -> Path | None:
    """The file under directory whose path ends with `suffix` (or suffix.gz)."""
    names = [suffix] + ([suffix + ".gz"] if gz_ok else [])
    for name in names:
        hits = sorted(p for p in directory.rglob(Path(name).name)
                      if p.is_file() and p.as_posix().endswith("/" + name)
                      and not is_hidden(p, directory))
        if hits:
            return hits[0]
    return None


def check_drive_layout(directory: Path, family: str, archive_name: str) -> list[Path]:
    found, missing = [], []
    for suffix in DRIVE_LAYOUT[family]:
        hit = locate(directory, suffix, gz_ok="/raw/" in suffix)
        (found if hit else missing).append(hit or suffix)
    if missing:
        present = sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())
        raise DataError(f"{archive_name} unpacked into {directory} lacks {missing} (found: "
                        f"{present[:12]}{' ...' if len(present) > 12 else ''}). The archive's "
                        "layout is not the expected one (MNIST/raw/*-ubyte, MNIST/train_dat.pt, "
                        "3dshapes/images.pt, smallNORB/train.pt); arrange the files so and "
                        "run `msp data download` again, or report the layout")
    return found


def download_drive(family: str, directory: Path, base_url: str | None, quiet: bool,
                   **limits) -> dict:
    name = DRIVE_ARCHIVE[family]
    archive = directory / name
    hand_placed = archive.is_file()
    if hand_placed:
        origin = {"archive": name, "url": "placed by hand"}
    elif base_url:
        url = base_url.rstrip("/") + "/" + name
        fetch(url, archive, quiet=quiet, **limits)
        origin = {"archive": name, "url": url}
    else:
        ids = drive_file_ids(quiet)
        if name not in ids:
            raise DataError(f"{name} is not in the authors' Google Drive folder "
                            f"{DRIVE_FOLDER_ID} (it holds {sorted(ids)})")
        fetch(None, archive, file_id=ids[name], quiet=quiet, **limits)
        origin = {"archive": name, "url": f"https://drive.google.com/uc?id={ids[name]}"}
    try:
        check_not_html(archive, name)
    except DataError:
        if not hand_placed:
            archive.unlink(missing_ok=True)
        raise
    origin["archive_sha256"] = file_digest(archive)
    origin["archive_bytes"] = archive.stat().st_size
    # Unpacked into a hidden temporary folder, moved in only when complete; a kill in
    # between leaves that folder, which the next download removes and never lists.
    unpack = Path(tempfile.mkdtemp(prefix=".unpack-", dir=directory))
    try:
        safe_extract(archive, unpack)
        check_drive_layout(unpack, family, name)
        for entry in unpack.iterdir():
            target = directory / entry.name
            if target.exists():
                shutil.rmtree(target) if target.is_dir() else target.unlink()
            os.replace(entry, target)
    except DataError:
        if not hand_placed:
            archive.unlink(missing_ok=True)  # a bad download is not worth keeping
        raise
    finally:
        shutil.rmtree(unpack, ignore_errors=True)
    if not hand_placed:
        archive.unlink()  # the unpacked files are what the manifest tracks
    return origin


def check_gzip_stream(path: Path) -> None:
    if path.suffix != ".gz":
        return
    try:
        with gzip.open(path, "rb") as stream:
            while stream.read(1 << 22):
                pass
    except (EOFError, OSError, gzip.BadGzipFile) as error:
        raise DataError(f"{path}: truncated or corrupt gzip file ({error})") from None


def check_h5_file(path: Path) -> None:
    """3dshapes.h5 opens and declares images (480000, 64, 64, 3) and labels (480000, 6)."""
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            shapes = {k: handle[k].shape for k in ("images", "labels")}
    except (OSError, KeyError) as error:
        raise DataError(f"{path}: not a complete 3dshapes HDF5 file ({error})") from None
    if shapes != {"images": (480000, 64, 64, 3), "labels": (480000, 6)}:
        raise DataError(f"{path}: datasets {shapes}, expected images (480000, 64, 64, 3) and "
                        "labels (480000, 6)")


def download_official(family: str, directory: Path, base_url: str | None, quiet: bool,
                      **limits) -> dict:
    origin = {}
    for name, url, md5 in OFFICIAL_FILES[family]:
        dest = directory / name
        if base_url:
            url = base_url.rstrip("/") + "/" + name
        placed = dest.is_file()
        if not placed:
            fetch(url, dest, quiet=quiet, **limits)
        try:
            if md5 is not None and file_digest(dest, "md5") != md5:
                raise DataError(f"{dest}: MD5 {file_digest(dest, 'md5')} differs from the "
                                f"published {md5}; the file is corrupt or not the official one")
            check_gzip_stream(dest)
            if dest.suffix == ".h5":
                check_h5_file(dest)
        except DataError as error:
            if not placed:
                dest.unlink(missing_ok=True)
            raise DataError(f"{error}. Delete it and download again, or place the official "
                            f"file {name} by hand in {directory}/") from None
        origin[name] = "placed by hand" if placed else url
    return origin


def download(family: str, root, source: str, *, base_url: str | None = None,
             quiet: bool = True, timeout: float = READ_TIMEOUT,
             deadline: float = DEADLINE) -> Path:
    """Fetch (or verify) the raw files of one family; returns the manifest path.

    timeout: seconds the server may stay silent; deadline: seconds per file."""
    check_source(family, source)
    directory = raw_dir(root, source, family)
    directory.mkdir(parents=True, exist_ok=True)
    manifest = directory / "manifest.json"
    if manifest.is_file():
        verify_manifest(directory, deep=True)
        return manifest
    remove_leftovers(directory)
    limits = {"timeout": (CONNECT_TIMEOUT, float(timeout)), "deadline": float(deadline)}
    if source == "embedded":
        return write_manifest(directory, family, source, [], {"generator": "msp.data.embedded"})
    if source == "drive":
        origin = download_drive(family, directory, base_url or os.environ.get(DRIVE_URL_ENV),
                                quiet, **limits)
    else:
        origin = download_official(family, directory, base_url or os.environ.get(OFFICIAL_URL_ENV),
                                   quiet, **limits)
    files = [p for p in directory.rglob("*") if p.is_file() and p.name != "manifest.json"
             and not is_hidden(p, directory) and p.name != DRIVE_ARCHIVE.get(family)]
    return write_manifest(directory, family, source, files, origin)
