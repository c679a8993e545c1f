"""Checkpoints of a training run: save, find the newest that loads, load, retention.

A checkpoint is a plain dict of tensors and primitive containers (docs/interfaces.md):
model / optimizer state dicts, step, the full run config as a plain dict, RNG states as
tensors, the data generator's state, the machines it was trained on. So our own files load
with `weights_only=True`: a checkpoint cannot run code when loaded. (The authors' snapshots
are read by msp.authors_checkpoint, also with weights_only=True.)

    RUN/checkpoints/step_XXXXXXXX.pt   periodic, newest resumed (msp.train)
    RUN/model.pt                       final, the completion marker
"""

import pickle
import warnings
from pathlib import Path

import torch

from msp import io
from msp.models import build_model


def save_checkpoint(checkpoint: dict, path) -> None:
    """torch.save atomically (temp file, fsync, rename): never a half file under `path`."""
    path = Path(path)
    try:
        io.torch_save(checkpoint, path)
    except (OSError, RuntimeError) as err:  # torch reports a full disk as RuntimeError
        code = err.errno if isinstance(err, OSError) else None
        message = (f"could not write checkpoint {path} ({err.strerror if code else err}); free disk space and "
                   "rerun the same command: training resumes from the last complete checkpoint")
        raise (OSError(code, message) if code else OSError(message)) from err


class UnsafeCheckpointError(RuntimeError):
    """A checkpoint file that is not plain data: unpickling it would run code."""


def read_checkpoint(path, map_location="cpu", mmap: bool = False) -> dict:
    """torch.load of one of our checkpoint files: tensors and plain containers only. A file
    that names anything else (code to run when unpickled) raises UnsafeCheckpointError
    naming the file; nothing in it runs. mmap: tensors stay on disk until used (reading one
    small entry of many checkpoints)."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        what = str(err).split("Unsupported global:", 1)[1].split(".", 1)[0].strip() \
            if "Unsupported global:" in str(err) else "an unsupported pickle instruction"
        raise UnsafeCheckpointError(
            f"refused to load {path}: it is not a plain-data checkpoint of msp train (it asks to "
            f"run code: {what}; weights_only=True refused it), so nothing in it was executed. Do not use "
            "this file: delete it "
            "(or, for an authors' snapshot, use `msp import-authors`)") from None


def checkpoint_paths(out_dir) -> list[Path]:
    """Periodic checkpoints of a run, oldest first."""
    return sorted((Path(out_dir) / "checkpoints").glob("step_*.pt"))


def periodic_path(out_dir, step: int) -> Path:
    return Path(out_dir) / "checkpoints" / f"step_{step:08d}.pt"


def prune_checkpoints(out_dir, keep: int, verified: set | None = None) -> None:
    """Delete all but the newest `keep` periodic checkpoints that load. Unreadable files do
    not count (else a run restarted among corrupt checkpoints would delete its only good
    one); they are left for inspection. `verified`: paths known to load (updated here), so
    each file is read at most once per process."""
    verified = set() if verified is None else verified
    good = []
    for path in checkpoint_paths(out_dir):
        if path not in verified:
            try:
                read_checkpoint(path)
            except Exception:
                continue
            verified.add(path)
        good.append(path)
    for old in good[:-keep]:
        old.unlink(missing_ok=True)
        verified.discard(old)


def load_latest_checkpoint(out_dir, map_location="cpu"):
    """The newest checkpoint that loads -> (dict, path); a truncated or corrupt one is
    skipped with a warning; (None, None) when there is none."""
    for path in reversed(checkpoint_paths(out_dir)):
        try:
            return read_checkpoint(path, map_location), path
        except UnsafeCheckpointError as err:
            warnings.warn(f"{err}; trying an older one")
        except Exception as err:  # truncated pickle/zip: fall back to the previous one
            warnings.warn(f"checkpoint {path} is unreadable ({type(err).__name__}: {err}); trying an older one")
    return None, None


def recorded_machines(path) -> list[dict]:
    """The machines a run was trained on (msp.device.machine_facts plus from_step, one per
    training session); [] for a checkpoint from before they were recorded, or an imported one."""
    return read_checkpoint(path, mmap=True).get("machines", [])


def load_checkpoint(path, map_location="cpu"):
    """A checkpoint file -> (model in eval mode, full run config dict)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist: train the run first (msp train / snakemake)")
    try:
        ckpt = read_checkpoint(path, map_location)
    except UnsafeCheckpointError:
        raise
    except Exception as err:
        raise RuntimeError(f"checkpoint {path} is unreadable ({err}); delete it and rerun training") from None
    cfg = ckpt["config"]
    model = build_model(cfg["model"], cfg["model"]["image_shape"])
    model.load_state_dict(ckpt["model"])
    return model.to(map_location).eval(), cfg
