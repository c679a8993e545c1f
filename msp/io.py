"""Atomic file writes: the one home of "temp file in the same folder, fsync, rename".

A reader, a crash or a full disk sees either the old file or the complete new one, never a
half-written file; the temp file is removed on every error path (an OSError, torch's
RuntimeError on a full disk, a KeyboardInterrupt). Every writer creates missing parent
folders.

    write_text / write_json / write_yaml / write_csv   text formats
    save_array / save_npz / save_figure / torch_save   binary formats
    atomic_path                                        for any other writer that takes a path
"""

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable; not every file system lets a folder be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path) -> Iterator[Path]:
    """Yield a fresh temp path next to `path` (same extension); on success fsync it and
    rename it onto `path`, on any exception delete it and re-raise.

        with atomic_path("fig.png") as tmp:
            fig.savefig(tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Same folder (a rename within one file system is atomic); hidden, so globs skip it.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp{path.suffix}")
    try:
        tmp.touch(exist_ok=False)
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


@contextmanager
def atomic_open(path, mode: str = "w", **kwargs):
    """open() on a temp file that replaces `path` only when the block completes."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as f:
        yield f


def write_text(path, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)


def write_json(path, obj, *, indent: int = 2, sort_keys: bool = False) -> None:
    write_text(path, json.dumps(obj, indent=indent, sort_keys=sort_keys) + "\n")


def write_yaml(path, obj, *, sort_keys: bool = False) -> None:
    import yaml

    write_text(path, yaml.safe_dump(obj, sort_keys=sort_keys))


def write_csv(path, frame, **to_csv_kwargs) -> None:
    """A pandas DataFrame -> CSV (index=False unless told otherwise)."""
    to_csv_kwargs.setdefault("index", False)
    write_text(path, frame.to_csv(**to_csv_kwargs))


def save_array(path, array) -> None:
    """np.save of one array (path should end in .npy)."""
    import numpy as np

    with atomic_open(path, "wb") as f:
        np.save(f, np.ascontiguousarray(array))


def save_npz(path, arrays: dict, compressed: bool = True) -> None:
    import numpy as np

    with atomic_open(path, "wb") as f:
        (np.savez_compressed if compressed else np.savez)(f, **arrays)


def save_figure(fig, path, **savefig_kwargs) -> None:
    """fig.savefig (format from the extension) to `path` atomically."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, **savefig_kwargs)


def torch_save(obj, path) -> None:
    import torch

    with atomic_open(path, "wb") as f:
        torch.save(obj, f)
