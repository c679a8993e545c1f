"""One writer per run directory: `with run_lock(DIR): ...` around everything `msp train`
writes there (checkpoints, metrics.jsonl, config.yaml, model.pt).

DIR/train.lock is created exclusively (O_EXCL, which also holds on NFS v3+) and holds the
owner's host, pid and process start time. A second `msp train` on the same DIR, from this
or another working directory or Snakemake instance, stops with a message naming the owner.
A lock whose owner is gone (killed, crashed: same host, no process with that pid and start
time) is stale: it is removed with a message and the run proceeds. A lock from another
host cannot be checked from here; the message says how to remove it by hand.
"""

import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path

LOCK_NAME = "train.lock"


class RunLockedError(RuntimeError):
    """Another process holds the run directory."""


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), None when unknown.
    Together with the pid it identifies a process: a recycled pid has another start time."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(owner: dict) -> bool:
    pid = int(owner.get("pid", -1))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    recorded, now = owner.get("start"), _start_time(pid)
    return recorded is None or now is None or recorded == now


def _owner_text(owner: dict) -> str:
    return f"pid {owner.get('pid')} on {owner.get('host')}, since {owner.get('since')}"


@contextmanager
def run_lock(out_dir):
    """Hold DIR/train.lock while the block runs; raise RunLockedError if another live
    process holds it; take over (with a message) a stale lock left by a dead process."""
    path = Path(out_dir) / LOCK_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    me = {"host": socket.gethostname(), "pid": os.getpid(), "start": _start_time(os.getpid()),
          "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    for _ in range(3):  # a stale lock removed by another contender: try again
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                owner = json.loads(path.read_text() or "{}")
            except (OSError, ValueError):
                owner = {}  # being written right now, or torn by a crash
            if not owner and time.time() - _mtime(path) < 5:
                time.sleep(0.2)
                continue
            if owner.get("host") not in (None, me["host"]):
                raise RunLockedError(
                    f"{out_dir} is locked by another msp train ({_owner_text(owner)}; {path}). "
                    f"If nothing runs there any more, delete {path} and rerun") from None
            if owner and _alive(owner):
                raise RunLockedError(
                    f"{out_dir} is being trained by another msp train ({_owner_text(owner)}); two "
                    f"writers would mix their checkpoints and metrics. Wait for it or stop it; "
                    f"its lock is {path}") from None
            print(f"{path}: removing a stale lock of a process that is gone "
                  f"({_owner_text(owner) if owner else 'unreadable'}); resuming", file=sys.stderr)
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        break
    else:
        raise RunLockedError(f"could not take {path}: other processes keep taking it; rerun")
    try:
        yield path
    finally:
        try:
            if json.loads(path.read_text()).get("pid") == me["pid"]:
                path.unlink()
        except (OSError, ValueError):
            pass


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
